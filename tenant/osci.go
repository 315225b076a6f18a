package tenant

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"time"

	"github.com/parzelle/parzelle/strictyaml"
)

// checkPostbox reads an identity's OSCI postbox certificates: both or
// neither, one certificate each, and only for an identity reachable by
// osci.
func (c *Config) checkPostbox(pos *strictyaml.Positions, h hash.Hash, field string, id *Identity) {
	if id.Collect && !slices.Contains(id.Transports, "xta") {
		pos.Errorf(field+".collect", "what the node collects lands in the identity's XTA box or register inbox: transports needs xta")
	}
	p := &id.OSCI
	if p.CipherCertificate == "" && p.SignatureCertificate == "" {
		return
	}
	field += ".osci"
	switch {
	case !slices.Contains(id.Transports, "osci"):
		pos.Errorf(field, "an OSCI postbox needs the transport osci in transports")
		return
	case p.CipherCertificate == "" || p.SignatureCertificate == "":
		pos.Errorf(field, "an OSCI postbox needs both cipherCertificate (clients address it by that) and signatureCertificate (whose signed requests collect from it)")
		return
	}
	k := keyChecker{c: c, pos: pos, h: h, now: time.Now()}
	one := func(name, rel string) *x509.Certificate {
		certs := k.trusted(field+"."+name, rel)
		if len(certs) > 1 {
			pos.Errorf(field+"."+name, "holds %d certificates; give the addressee's one certificate", len(certs))
		}
		if len(certs) != 1 {
			return nil
		}
		return certs[0]
	}
	p.cipher, p.signature = one("cipherCertificate", p.CipherCertificate), one("signatureCertificate", p.SignatureCertificate)
	if p.cipher != nil && p.cipher.KeyUsage != 0 && p.cipher.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) == 0 {
		pos.Errorf(field+".cipherCertificate", "certificate %q does not allow encryption (its key usage lacks keyEncipherment)", p.cipher.Subject)
	}
	switch u, err := url.Parse(p.Passive); {
	case p.Passive == "":
		if p.PassiveCA != "" {
			pos.Errorf(field+".passiveCA", "is for a passive recipient: set passive (its URL) too")
		}
	case err != nil || u.Scheme != "https" || u.Host == "":
		pos.Errorf(field+".passive", "%q is no https URL of the passive recipient", p.Passive)
	case p.PassiveCA != "":
		p.passiveRoots = x509.NewCertPool()
		for _, c := range k.trusted(field+".passiveCA", p.PassiveCA) {
			p.passiveRoots.AddCert(c)
		}
	}
}

// Postbox is an OSCI postbox of a tenant identity.
type Postbox struct {
	Tenant   *Config
	Identity *Identity
}

// Postbox returns the OSCI postbox addressed by the cipher certificate
// (DER), false when no tenant identity has it.
func (s *Set) Postbox(cipher []byte) (Postbox, bool) {
	p, ok := s.postboxes[sha256.Sum256(cipher)]
	return p, ok
}

// postboxClaim is the claim an identity's postbox makes on the node's
// address space: its cipher certificate, which no other identity may have.
func postboxClaim(id *Identity) (string, bool) {
	if id.OSCI.cipher == nil {
		return "", false
	}
	return fmt.Sprintf("osci-cipher:%x", sha256.Sum256(id.OSCI.cipher.Raw)), true
}
