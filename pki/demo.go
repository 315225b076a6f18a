package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// DemoClientSubject is the subject of a demo client certificate for a
// tenant; the demo tenant files name it.
func DemoClientSubject(tenant string) pkix.Name {
	return pkix.Name{CommonName: tenant, OrganizationalUnit: []string{"Fachverfahren"}, Organization: []string{"Parzelle Demo"}}
}

// DemoConnectionNode is the common name of the demo's NOOTS connection
// node, whose client certificate presents evidence requests.
const DemoConnectionNode = "noots"

// DemoFile is one file of the demo PKI and whether this run created it.
type DemoFile struct {
	Path    string
	Created bool
}

// DemoSigningSubject and DemoEncryptionSubject are the subjects of a demo
// tenant's signing and encryption certificates.
func DemoSigningSubject(tenant string) pkix.Name {
	return pkix.Name{CommonName: tenant + " signing", OrganizationalUnit: []string{"Register"}, Organization: []string{"Parzelle Demo"}}
}

// DemoEncryptionSubject: see DemoSigningSubject.
func DemoEncryptionSubject(tenant string) pkix.Name {
	return pkix.Name{CommonName: tenant + " encryption", OrganizationalUnit: []string{"Register"}, Organization: []string{"Parzelle Demo"}}
}

// DemoIdPSubject is the subject of a demo tenant's identity provider
// certificate, whose key signs the tokens of the tenant's people.
func DemoIdPSubject(tenant string) pkix.Name {
	return pkix.Name{CommonName: tenant + " idp", OrganizationalUnit: []string{"Identity Provider"}, Organization: []string{"Parzelle Demo"}}
}

// Demo makes sure dir holds a demo PKI: ca.crt/ca.key, server.crt/server.key
// for localhost, 127.0.0.1 and ::1 (plus hosts), clients/<t>.crt/.key for
// each tenant, and each tenant's own keys the demo tenant files name:
// tenants/<t>/signing.crt/.key (of the algorithm alg) and
// tenants/<t>/encryption.crt/.key (always RSA-3072, since XML Encryption
// transports keys with RSA-OAEP), and tenants/<t>/idp.crt/.key, the
// ECDSA P-256 key of the tenant's demo identity provider that signs tokens
// for people (`parzelle token issue`); clients/noots.crt/.key for a NOOTS
// connection node and vermittlungsstelle.crt/.key (ECDSA P-256), the seal
// of the demo's evidence requests' tokens (`parzelle xnachweis token`). What exists and is valid for at least
// another week is reused; a new CA re-issues everything.
func Demo(dir string, tenants, hosts []string, alg Algorithm, now time.Time) ([]DemoFile, error) {
	var files []DemoFile
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca, err := loadAuthority(caCert, caKey, now)
	newCA := err != nil
	if newCA {
		ca, err = NewAuthority(pkix.Name{CommonName: "Parzelle Demo CA", Organization: []string{"Parzelle Demo"}}, alg, now.Add(-time.Hour), now.AddDate(5, 0, 0))
		if err != nil {
			return nil, err
		}
		if err := WriteFiles(caCert, caKey, ca.Cert, ca.Key); err != nil {
			return nil, err
		}
	}
	files = append(files, DemoFile{Path: caCert, Created: newCA})

	leaf := func(name string, t Template, alg Algorithm) error {
		certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if !newCA && validLeaf(certPath, keyPath, ca, now) {
			files = append(files, DemoFile{Path: certPath})
			return nil
		}
		t.NotBefore, t.NotAfter = now.Add(-time.Hour), now.AddDate(1, 0, 0)
		cert, key, err := ca.Issue(t, alg)
		if err != nil {
			return err
		}
		if err := WriteFiles(certPath, keyPath, cert, key); err != nil {
			return err
		}
		files = append(files, DemoFile{Path: certPath, Created: true})
		return nil
	}
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	if err := leaf("server", Template{Subject: pkix.Name{CommonName: "localhost", Organization: []string{"Parzelle Demo"}}, DNSNames: dns, IPs: ips, Server: true}, alg); err != nil {
		return nil, err
	}
	for _, t := range tenants {
		if err := leaf(filepath.Join("clients", t), Template{Subject: DemoClientSubject(t), Client: true}, alg); err != nil {
			return nil, err
		}
	}
	// The NOOTS side of the demo: a connection node's client certificate
	// and the Vermittlungsstelle's seal for evidence requests' tokens.
	if err := leaf(filepath.Join("clients", DemoConnectionNode), Template{Subject: DemoClientSubject(DemoConnectionNode), Client: true}, alg); err != nil {
		return nil, err
	}
	if err := leaf("vermittlungsstelle", Template{Subject: pkix.Name{CommonName: "Vermittlungsstelle (Demo-Siegel)", Organization: []string{"Parzelle Demo"}}}, ECDSAP256); err != nil {
		return nil, err
	}
	for _, t := range tenants {
		if err := leaf(filepath.Join("tenants", t, "signing"), Template{Subject: DemoSigningSubject(t)}, alg); err != nil {
			return nil, err
		}
		if err := leaf(filepath.Join("tenants", t, "encryption"), Template{Subject: DemoEncryptionSubject(t)}, RSA3072); err != nil {
			return nil, err
		}
		if err := leaf(filepath.Join("tenants", t, "idp"), Template{Subject: DemoIdPSubject(t)}, ECDSAP256); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func loadAuthority(certPath, keyPath string, now time.Time) (*Authority, error) {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !certs[0].IsCA || now.Add(7*24*time.Hour).After(certs[0].NotAfter) {
		return nil, fmt.Errorf("pki: %s is no CA or expires within a week", certPath)
	}
	return &Authority{Cert: certs[0], Key: key}, nil
}

func validLeaf(certPath, keyPath string, ca *Authority, now time.Time) bool {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return false
	}
	if _, err := LoadKey(keyPath); err != nil {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now.Add(7 * 24 * time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}
