package tenant

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parzelle/parzelle/pki"
)

// Set is an immutable snapshot of every active tenant.
type Set struct {
	tenants    map[string]*Config
	ordered    []*Config // by id
	byIdentity map[string]*Config
	postboxes  map[[32]byte]Postbox // by the SHA-256 of the cipher certificate
	clientCAs  *x509.CertPool
	versions   map[string]int
	issuers    map[string][]tokenIssuerOf // token issuers by iss, tenants by id
	// verified remembers the chains that verified against a tenant's
	// client CAs (see verifyChain), so that the requests of one
	// connection do not each build and check the chain again; subjects
	// remembers certificates' subjects as strings, plain and normalized,
	// by fingerprint. Both hold at most maxVerifiedChains in all.
	verified  sync.Map
	subjects  sync.Map
	nVerified atomic.Int64
}

// Tenant returns the tenant with the id, or nil.
func (s *Set) Tenant(id string) *Config { return s.tenants[id] }

// Owner returns the tenant that owns a transport identity, or nil.
func (s *Set) Owner(identity string) *Config { return s.byIdentity[identity] }

// Version is the tenant's applied configuration version (0 before it was
// recorded).
func (s *Set) Version(id string) int { return s.versions[id] }

// Tenants returns every tenant, ordered by id. The slice is shared: do not
// modify it.
func (s *Set) Tenants() []*Config { return s.ordered }

// ClientCAs is the union of every tenant's client CAs: what the TLS listener
// asks client certificates to chain to.
func (s *Set) ClientCAs() *x509.CertPool { return s.clientCAs }

// NewSet returns a Set of the configurations (their versions unrecorded), for
// tools and tests that read tenant files without a registry.
func NewSet(configs ...*Config) *Set {
	m := map[string]*Config{}
	for _, c := range configs {
		m[c.ID] = c
	}
	return newSet(m, map[string]int{})
}

func newSet(configs map[string]*Config, versions map[string]int) *Set {
	s := &Set{tenants: map[string]*Config{}, byIdentity: map[string]*Config{}, postboxes: map[[32]byte]Postbox{}, clientCAs: x509.NewCertPool(), versions: versions, issuers: map[string][]tokenIssuerOf{}}
	for _, c := range configs {
		s.tenants[c.ID] = c
		s.ordered = append(s.ordered, c)
		for i, id := range c.Identities {
			s.byIdentity[id.ID] = c
			if id.OSCI.cipher != nil {
				s.postboxes[sha256.Sum256(id.OSCI.cipher.Raw)] = Postbox{Tenant: c, Identity: &c.Identities[i]}
			}
		}
		for _, ca := range c.caCerts {
			s.clientCAs.AddCert(ca)
		}
	}
	sort.Slice(s.ordered, func(i, j int) bool { return s.ordered[i].ID < s.ordered[j].ID })
	for _, c := range s.ordered {
		for i := range c.Access.Tokens {
			ti := &c.Access.Tokens[i]
			s.issuers[ti.Issuer] = append(s.issuers[ti.Issuer], tokenIssuerOf{tenant: c.ID, TokenIssuer: ti})
		}
	}
	return s
}

// Grant is what one client entry of one tenant allows a certificate: to
// act for its identities, and its role in the tenant's access rules ("" for
// none).
type Grant struct {
	Tenant     string   `json:"tenant"`
	Client     string   `json:"client"`
	Identities []string `json:"identities"`
	Role       string   `json:"role,omitempty"`
}

// Principal is an authenticated client certificate and what it may do.
type Principal struct {
	Subject     string  `json:"subject"`
	Fingerprint string  `json:"sha256"`
	Grants      []Grant `json:"grants"`
}

// MayActFor reports whether the principal may act for the identity.
func (p *Principal) MayActFor(identity string) bool {
	for _, g := range p.Grants {
		if slices.Contains(g.Identities, identity) {
			return true
		}
	}
	return false
}

// ErrUnknownClient is returned for a certificate no tenant lists.
var ErrUnknownClient = errors.New("tenant: the client certificate is not assigned to any tenant")

// maxVerifiedChains bounds the verified chains and subjects a Set
// remembers; past it, it forgets them all and starts again.
const maxVerifiedChains = 4096

// validity is the span in which every certificate of a verified chain is
// valid.
type validity struct{ from, until time.Time }

// verifyChain reports whether the chain (leaf first, its fingerprint given)
// verifies against the tenant's client CAs at now, for client
// authentication. A chain that verified once is not checked again while
// every certificate of it is valid: the Set is immutable, so its tenants'
// CAs cannot change under the remembered answer.
func (s *Set) verifyChain(t *Config, chain []*x509.Certificate, fingerprint string, intermediates *x509.CertPool, now time.Time) bool {
	key := make([]string, 0, len(chain)+1)
	key = append(key, t.ID, fingerprint)
	for _, c := range chain[1:] {
		key = append(key, pki.Fingerprint(c))
	}
	k := strings.Join(key, "\x00")
	if v, ok := s.verified.Load(k); ok {
		w := v.(validity)
		if !now.Before(w.from) && !now.After(w.until) {
			return true
		}
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{Roots: t.clientCAs, Intermediates: intermediates, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return false
	}
	w := validity{chains[0][0].NotBefore, chains[0][0].NotAfter}
	for _, c := range chains[0][1:] {
		if c.NotBefore.After(w.from) {
			w.from = c.NotBefore
		}
		if c.NotAfter.Before(w.until) {
			w.until = c.NotAfter
		}
	}
	s.remember(&s.verified, k, w)
	return true
}

// subjectOf returns the certificate's subject as a string and normalized
// for comparing with client entries, computed once per certificate.
func (s *Set) subjectOf(cert *x509.Certificate, fingerprint string) (plain, normalized string) {
	if v, ok := s.subjects.Load(fingerprint); ok {
		names := v.([2]string)
		return names[0], names[1]
	}
	plain = cert.Subject.String()
	normalized = normalizeDN(plain)
	s.remember(&s.subjects, fingerprint, [2]string{plain, normalized})
	return plain, normalized
}

// remember stores a value in one of the Set's caches, which together hold
// at most maxVerifiedChains entries; past that they forget everything.
func (s *Set) remember(cache *sync.Map, key string, value any) {
	if s.nVerified.Add(1) > maxVerifiedChains {
		s.verified.Clear()
		s.subjects.Clear()
		s.nVerified.Store(1)
	}
	cache.Store(key, value)
}

// Authenticate maps a client certificate chain (leaf first) to the grants
// of every tenant that lists it: its subject or fingerprint matches a client
// entry and it chains to one of that tenant's own client CAs, valid at now
// and for client authentication.
func (s *Set) Authenticate(chain []*x509.Certificate, now time.Time) (*Principal, error) {
	if len(chain) == 0 {
		return nil, ErrUnknownClient
	}
	leaf := chain[0]
	p := &Principal{Fingerprint: pki.Fingerprint(leaf)}
	var subject string
	p.Subject, subject = s.subjectOf(leaf, p.Fingerprint)
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	for _, t := range s.ordered {
		verified := false
		for _, cl := range t.Clients {
			if cl.SHA256 != "" && cl.SHA256 != p.Fingerprint {
				continue
			}
			if cl.subject != "" && cl.subject != subject {
				continue
			}
			if !verified {
				if !s.verifyChain(t, chain, p.Fingerprint, intermediates, now) {
					break
				}
				verified = true
			}
			p.Grants = append(p.Grants, Grant{Tenant: t.ID, Client: cl.Name, Identities: cl.Identities, Role: cl.Role})
		}
	}
	if len(p.Grants) == 0 {
		return nil, ErrUnknownClient
	}
	return p, nil
}
