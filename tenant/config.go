// Package tenant reads the declarative tenant files (one YAML file per
// registerführende Stelle), keeps the current set of tenants, reloads it when
// the files change, maps client certificates to the identities they may
// act for, and decides who may do what with the tenant's register data
// (access rules for roles and purposes; signed tokens for people).
package tenant

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/strictyaml"
)

// Config is one tenant's configuration, as its file declares it.
type Config struct {
	ID         string     `yaml:"id" conf:"required"`
	Name       string     `yaml:"name" conf:"required"`
	Identities []Identity `yaml:"identities" conf:"required"`
	Clients    []Client   `yaml:"clients"`
	Trust      Trust      `yaml:"trust"`
	// Keys are the tenant's signing and decryption keys and the
	// certificates it trusts for signatures (see keys.go).
	Keys Keys `yaml:"keys"`
	// Schemas is the tenant's policy for messages without an installed
	// schema (see policy.go).
	Schemas SchemaPolicy `yaml:"schemas"`
	// Inboxes are the identities whose messages feed a register (see
	// inbox.go).
	Inboxes []Inbox `yaml:"inboxes"`
	// RegisterDecls are the tenant's registers, the `registers:` section
	// (see access.go; read them with Register and Registers).
	RegisterDecls []RegisterDecl `yaml:"registers"`
	// Access is who may do what with the tenant's register data (see
	// access.go).
	Access Access `yaml:"access"`
	// Mappings are the tenant's mapping spec files, relative to the tenant
	// file (see mappings.go; read them with MappingFiles).
	Mappings []string `yaml:"mappings"`
	// Evidence is the tenant as an XNachweis data provider (see
	// evidence.go; read it with EvidenceProvider).
	Evidence Evidence `yaml:"evidence"`

	// File is the tenant file's path.
	File string `yaml:"-"`
	// Document is the file's content.
	Document []byte `yaml:"-"`
	// SHA256 covers the file and every certificate and mapping spec file it
	// references, so that replacing a trust anchor or editing a spec is a
	// new version too.
	SHA256 string `yaml:"-"`

	clientCAs *x509.CertPool
	caCerts   []*x509.Certificate
	pos       *strictyaml.Positions

	mappingFiles []MappingFile
}

// Identity is a transport identity the tenant owns: an XTA account or OSCI
// addressee, e.g. ags:05111000 of type xoev in the category Meldebehörde.
type Identity struct {
	ID         string   `yaml:"id" conf:"required"`
	Type       string   `yaml:"type" conf:"required"`
	Category   string   `yaml:"category" conf:"required"`
	Transports []string `yaml:"transports" conf:"required"`
	// OSCI makes the identity an OSCI postbox (transport osci).
	OSCI OSCIPostbox `yaml:"osci"`
	// Collect says the identity's postbox is at another OSCI
	// intermediary (the directory's entry for the identity names it): the
	// node collects it every minute with the tenant's keys, and what it
	// fetches lands in the identity's XTA box or register inbox.
	Collect bool `yaml:"collect"`
}

// OSCIPostbox names the certificates of an OSCI addressee, files (PEM or
// DER) relative to the tenant file: OSCI clients address the postbox by
// its cipher certificate (content is end-to-end encrypted to it), and only
// requests signed with its signature certificate collect from it.
type OSCIPostbox struct {
	CipherCertificate    string `yaml:"cipherCertificate"`
	SignatureCertificate string `yaml:"signatureCertificate"`
	// Passive makes the addressee a passive recipient: the intermediary
	// pushes each delivery to this https URL (acceptDelivery) instead of
	// keeping it for collection. PassiveCA names the CA certificates
	// (PEM) its TLS certificate must chain to (default: the system's).
	Passive   string `yaml:"passive"`
	PassiveCA string `yaml:"passiveCA"`

	cipher, signature *x509.Certificate
	passiveRoots      *x509.CertPool
}

// PassiveRecipient returns the URL deliveries to the postbox are pushed
// to and the roots its TLS certificate must chain to (nil: the system's);
// "" for a postbox that is collected from.
func (p *OSCIPostbox) PassiveRecipient() (string, *x509.CertPool) { return p.Passive, p.passiveRoots }

// Cipher is the postbox's cipher certificate, nil for an identity without
// a postbox.
func (p *OSCIPostbox) Cipher() *x509.Certificate { return p.cipher }

// Signature is the certificate whose signed requests collect from the
// postbox.
func (p *OSCIPostbox) Signature() *x509.Certificate { return p.signature }

// Client is a client certificate that may act for some of the tenant's
// identities. It is recognised by its subject (as `openssl x509 -noout
// -subject -nameopt RFC2253` prints it), its SHA-256 fingerprint, or both,
// and must chain to one of the tenant's client CAs.
type Client struct {
	Name    string `yaml:"name" conf:"required"`
	Subject string `yaml:"subject"`
	SHA256  string `yaml:"sha256"`
	// Identities are the tenant identities the client may act for (none
	// for a client that only asks for evidence).
	Identities []string `yaml:"identities"`
	// Role is the certificate's role in the tenant's access rules; a
	// client without a role has no access to register data.
	Role string `yaml:"role"`

	subject string // Subject, normalised for comparison
}

// Trust holds the tenant's trust anchors, as PEM files relative to the
// tenant file.
type Trust struct {
	ClientCAs []string `yaml:"clientCAs"`
}

// Transports a tenant identity can be reached by.
var knownTransports = []string{"xta", "osci"}

var (
	idPattern          = regexp.MustCompile(`^[a-z][a-z0-9-]{1,62}$`)
	identityPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9:._/-]{0,254}$`)
	fingerprintPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Parse reads and checks one tenant file. Certificate files it references
// are read relative to the file's directory. Every problem is reported with
// the file, line and field.
func Parse(file string, data []byte) (*Config, error) {
	c := &Config{File: file, Document: data}
	pos, err := strictyaml.Decode(file, data, c)
	if !pos.Parsed() {
		return nil, err
	}
	h := sha256.New()
	h.Write(data)

	if base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".yaml"), ".yml"); c.ID != base {
		pos.Errorf("id", "tenant id %q must match the file name (%s.yaml)", c.ID, c.ID)
	}
	if !idPattern.MatchString(c.ID) {
		pos.Errorf("id", "%q is not a tenant id: lower-case letters, digits and '-', 2 to 63 characters, starting with a letter", c.ID)
	}
	owned := map[string]bool{}
	for i, id := range c.Identities {
		field := fmt.Sprintf("identities[%d]", i)
		if !identityPattern.MatchString(id.ID) {
			pos.Errorf(field+".id", "%q is not an identity: letters, digits and : . _ / -, e.g. ags:05111000", id.ID)
		}
		if owned[id.ID] {
			pos.Errorf(field+".id", "identity %q is listed twice", id.ID)
		}
		owned[id.ID] = true
		for j, tr := range id.Transports {
			if !slices.Contains(knownTransports, tr) {
				pos.Errorf(fmt.Sprintf("%s.transports[%d]", field, j), "unknown transport %q (known: %s)", tr, strings.Join(knownTransports, ", "))
			}
		}
		c.checkPostbox(pos, h, field, &c.Identities[i])
	}
	for i, cl := range c.Clients {
		field := fmt.Sprintf("clients[%d]", i)
		if cl.Subject == "" && cl.SHA256 == "" {
			pos.Errorf(field, "give subject, sha256 or both to recognise the client certificate")
		}
		if cl.Subject != "" {
			c.Clients[i].subject = normalizeDN(cl.Subject)
			if c.Clients[i].subject == "" {
				pos.Errorf(field+".subject", "%q is not a distinguished name such as CN=name,O=organisation", cl.Subject)
			}
		}
		if cl.SHA256 != "" && !fingerprintPattern.MatchString(cl.SHA256) {
			pos.Errorf(field+".sha256", "want the certificate's SHA-256 fingerprint as 64 lower-case hex digits")
		}
		for j, id := range cl.Identities {
			if !owned[id] {
				pos.Errorf(fmt.Sprintf("%s.identities[%d]", field, j), "identity %q is not one of this tenant's identities", id)
			}
		}
	}
	if len(c.Clients) > 0 && len(c.Trust.ClientCAs) == 0 {
		pos.Errorf("trust.clientCAs", "clients are listed, so at least one client CA is needed to check their certificates")
	}
	c.clientCAs = x509.NewCertPool()
	for i, rel := range c.Trust.ClientCAs {
		field := fmt.Sprintf("trust.clientCAs[%d]", i)
		path := rel
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(file), rel)
		}
		pemData, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			pos.Errorf(field, "cannot read %s: %v", path, err)
			continue
		}
		h.Write(pemData)
		certs, err := pki.ParseCertificates(pemData)
		if err != nil {
			pos.Errorf(field, "%s: %v", path, err)
			continue
		}
		for _, cert := range certs {
			if !cert.IsCA {
				pos.Errorf(field, "%s: certificate %q is not a CA certificate", path, cert.Subject)
				continue
			}
			c.clientCAs.AddCert(cert)
			c.caCerts = append(c.caCerts, cert)
		}
	}
	c.checkKeys(pos, h)
	c.checkSchemaPolicy(pos)
	c.checkAccess(pos, h)
	c.checkMappings(pos, h)
	c.checkInboxes(pos)
	c.checkEvidence(pos, h)
	for i, cl := range c.Clients {
		if len(cl.Identities) == 0 && cl.Role == "" && !c.Evidence.Caller(cl.Name, "") {
			pos.Errorf(fmt.Sprintf("clients[%d]", i), "client %q may do nothing: give it identities to act for, a role, or name it under evidence.requesters[].clients or evidence.connectionNodes", cl.Name)
		}
	}
	if err := pos.Err(); err != nil {
		return nil, err
	}
	c.SHA256 = hex.EncodeToString(h.Sum(nil))
	c.pos = pos
	return c, nil
}

// normalizeDN rewrites an RFC 4514 distinguished name as its sorted
// "type=value" attributes (type upper-cased, spaces around separators
// trimmed, escapes kept), so that two spellings of one name compare equal
// regardless of attribute order. It returns "" for something that is not a
// DN.
func normalizeDN(s string) string {
	var attrs []string
	var cur strings.Builder
	flush := func() bool {
		typ, val, ok := strings.Cut(cur.String(), "=")
		typ, val = strings.ToUpper(strings.TrimSpace(typ)), strings.TrimSpace(val)
		if !ok || typ == "" || val == "" {
			return false
		}
		attrs = append(attrs, typ+"="+val)
		cur.Reset()
		return true
	}
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '\\' && i+1 < len(s):
			cur.WriteByte(ch)
			cur.WriteByte(s[i+1])
			i++
		case ch == ',' || ch == '+':
			if !flush() {
				return ""
			}
		default:
			cur.WriteByte(ch)
		}
	}
	if !flush() {
		return ""
	}
	slices.Sort(attrs)
	return strings.Join(attrs, ",")
}
