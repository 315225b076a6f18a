package xta

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/strictyaml"
	"github.com/parzelle/parzelle/tenant"
)

// Entry is what the directory knows about one reader and service: the
// shape of a DVDV answer.
type Entry struct {
	// Known is false when the directory has no entry for the reader.
	Known     bool
	Available bool
	// Intermediary is the address messages to the reader go to; empty for
	// readers hosted on this node.
	Intermediary string
	// CipherCertificate is the reader's encryption certificate (DER).
	CipherCertificate []byte
	// IntermediaryCipher and IntermediarySignature are the certificates
	// (DER) of the OSCI intermediary the reader is reached through:
	// requests are encrypted to the first, its answers must be signed
	// with the second.
	IntermediaryCipher, IntermediarySignature []byte
	// Passive is set for a passive recipient (forwardDelivery, to
	// ContentReceiver, the address its intermediary knows for it); else
	// the reader collects from a postbox (storeDelivery).
	Passive         bool
	ContentReceiver string
}

// Directory answers lookupService. A failing directory is reported to the
// client as 9031.
type Directory interface {
	Lookup(ctx context.Context, reader, service string) (Entry, error)
}

// StaticDirectory answers from the tenant configuration (readers hosted
// here for XTA, available for every service) and from a YAML file of
// readers elsewhere (and of readers hosted here for OSCI only, through
// their intermediary), read on every lookup so that edits apply at once.
type StaticDirectory struct {
	Tenants func() *tenant.Set
	// File is the directory file; empty for none.
	File string
}

// directoryFile is the format of the static directory file:
//
//	entries:
//	  - reader: dvdv:09162000-0001
//	    services: [http://osci.de/xmeld33/xmeld33freieSuche.wsdl]   # empty: every service
//	    intermediary: https://osci.example.invalid/osci-manager
//	    cipherCertificate: certs/muenchen-cipher.crt                # PEM or DER, relative to the file
//	    intermediaryCipherCertificate: certs/osci-manager-cipher.cer
//	    intermediarySignatureCertificate: certs/osci-manager-signature.cer
//	    mode: postbox                                               # or passive, with
//	    contentReceiver: https://empfaenger.example/osci            # the recipient's address
type directoryFile struct {
	Entries []struct {
		Reader                           string   `yaml:"reader" conf:"required"`
		Services                         []string `yaml:"services"`
		Intermediary                     string   `yaml:"intermediary"`
		CipherCertificate                string   `yaml:"cipherCertificate"`
		IntermediaryCipherCertificate    string   `yaml:"intermediaryCipherCertificate"`
		IntermediarySignatureCertificate string   `yaml:"intermediarySignatureCertificate"`
		Mode                             string   `yaml:"mode"`
		ContentReceiver                  string   `yaml:"contentReceiver"`
		Available                        *bool    `yaml:"available"`
	} `yaml:"entries"`
}

// Remote returns the file's entry for an identity whatever the tenants
// host: where the identity's own postbox is, for collecting it.
func (d *StaticDirectory) Remote(ctx context.Context, identity string) (Entry, error) {
	if d.File == "" {
		return Entry{}, nil
	}
	return d.fromFile(identity, "")
}

// Lookup implements Directory.
func (d *StaticDirectory) Lookup(ctx context.Context, reader, service string) (Entry, error) {
	// A reader hosted here for XTA is answered from the tenants; one
	// hosted here for other transports only (an OSCI postbox) may be
	// reached through an intermediary the file names.
	var hosted Entry
	if owner := d.Tenants().Owner(reader); owner != nil {
		for _, id := range owner.Identities {
			if id.ID == reader {
				hosted = Entry{Known: true, Available: slices.Contains(id.Transports, "xta")}
			}
		}
	}
	if hosted.Available || d.File == "" {
		return hosted, nil
	}
	e, err := d.fromFile(reader, service)
	if err != nil || e.Known {
		return e, err
	}
	return hosted, nil
}

// fromFile reads the file's entry for the reader and service (every
// service when service is empty).
func (d *StaticDirectory) fromFile(reader, service string) (Entry, error) {
	data, err := os.ReadFile(d.File)
	if err != nil {
		return Entry{}, fmt.Errorf("xta: directory: %w", err)
	}
	var f directoryFile
	if _, err := strictyaml.Decode(d.File, data, &f); err != nil {
		return Entry{}, fmt.Errorf("xta: directory: %w", err)
	}
	for _, e := range f.Entries {
		if e.Reader != reader || (service != "" && len(e.Services) > 0 && !slices.Contains(e.Services, service)) {
			continue
		}
		out := Entry{Known: true, Available: e.Available == nil || *e.Available, Intermediary: e.Intermediary, ContentReceiver: e.ContentReceiver}
		switch e.Mode {
		case "", "postbox":
		case "passive":
			out.Passive = true
		default:
			return Entry{}, fmt.Errorf("xta: directory: reader %s: mode %q is neither postbox nor passive", reader, e.Mode)
		}
		for _, c := range []struct {
			file string
			into *[]byte
		}{{e.CipherCertificate, &out.CipherCertificate}, {e.IntermediaryCipherCertificate, &out.IntermediaryCipher}, {e.IntermediarySignatureCertificate, &out.IntermediarySignature}} {
			if c.file == "" {
				continue
			}
			path := c.file
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(d.File), path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return Entry{}, fmt.Errorf("xta: directory: reader %s: %w", reader, err)
			}
			certs, err := keys.ParseCertificates(data, path)
			if err != nil {
				return Entry{}, fmt.Errorf("xta: directory: reader %s: %w", reader, err)
			}
			*c.into = certs[0].Raw
		}
		return out, nil
	}
	return Entry{}, nil
}

func (s *Server) lookupService(ctx context.Context, c *call) error {
	if _, f := s.account(c, c.req.Author); f != nil {
		return f
	}
	var b strings.Builder
	b.WriteString(`<xta:LookupServiceResponse><xta:LookupServiceResultList>`)
	for _, list := range c.req.Body.ChildrenNamed(NSXTA, "LookupServiceRequestList") {
		ls := list.Child(NSXTA, "LookupService")
		if ls == nil || ls.Child(NSOSCIMeta, "Reader") == nil || partyFrom(ls.Child(NSOSCIMeta, "Reader")) == nil {
			return xtaFault(CodeNoParameter, "a LookupService names no Reader")
		}
		reader := ls.Child(NSOSCIMeta, "Reader")
		p := partyFrom(reader)
		service := ls.Child(NSXTA, "ServiceType").TrimmedText()
		if s.directory == nil {
			return xtaFault(CodeDirectory, "this node has no directory service configured")
		}
		e, err := s.directory.Lookup(ctx, p.ID, service)
		if err != nil {
			s.log.Error("xta directory lookup failed", "reader", p.ID, "service", service, "error", err)
			return xtaFault(CodeDirectory, "the directory could not be read")
		}
		var readerXML strings.Builder
		_ = reader.Write(&readerXML, prefixes)
		b.WriteString(`<xta:LookupServiceResult>` + readerXML.String() + `<xta:ServiceType>` + esc(service) + `</xta:ServiceType><xta:IsServiceAvailableValue>`)
		if e.Known {
			fmt.Fprintf(&b, `<xta:ServiceIsAvailable>%t</xta:ServiceIsAvailable>`, e.Available)
		} else {
			b.WriteString(`<xta:ServiceIsAvailableUnknown>true</xta:ServiceIsAvailableUnknown>`)
		}
		b.WriteString(`</xta:IsServiceAvailableValue>`)
		if len(e.CipherCertificate) > 0 {
			b.WriteString(`<xta:ServiceParameter><xta:ParameterType listURI="urn:parzelle:codeliste:xta-service-parameter" listVersionID="1"><code>ENCRYPTION_CERTIFICATE</code></xta:ParameterType><xta:Resource>` +
				base64.StdEncoding.EncodeToString(e.CipherCertificate) + `</xta:Resource></xta:ServiceParameter>`)
		}
		if e.Intermediary != "" {
			b.WriteString(`<xta:ServiceParameter><xta:ParameterType listURI="urn:parzelle:codeliste:xta-service-parameter" listVersionID="1"><code>INTERMEDIARY_ADDRESS</code></xta:ParameterType><xta:Resource>` +
				base64.StdEncoding.EncodeToString([]byte(e.Intermediary)) + `</xta:Resource></xta:ServiceParameter>`)
		}
		b.WriteString(`</xta:LookupServiceResult>`)
	}
	b.WriteString(`</xta:LookupServiceResultList></xta:LookupServiceResponse>`)
	c.reply("", b.String())
	return nil
}
