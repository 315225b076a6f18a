package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlenc"
	"github.com/parzelle/parzelle/xmlsafe"
)

func cmdOSCI(args []string) error {
	switch {
	case len(args) > 0 && args[0] == "inspect":
		return osciInspect(args[1:], os.Stdout)
	case len(args) > 0 && (args[0] == "send" || args[0] == "fetch" || args[0] == "cards"):
		return osciClient(args[0], args[1:], os.Stdout)
	}
	fmt.Fprintln(os.Stderr, "usage: parzelle osci inspect [--key FILE]... [--pin-env VAR] MESSAGE\n"+osciClientUsage)
	return exitError{2}
}

// osciInspect is `parzelle osci inspect`: it shows a captured OSCI request
// — order, dialog control, header blocks, certificates, the client
// signature's verdict and what it covers, attachments — and, with keys,
// decrypts the transport layer and the content layer.
func osciInspect(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parzelle osci inspect", flag.ContinueOnError)
	var keyFiles listFlag
	fs.Var(&keyFiles, "key", "private key to decrypt with: PKCS#12 (.p12/.pfx) or PEM with its certificate in --cert; repeatable (the intermediary's for the transport layer, a reader's for the content)")
	cert := fs.String("cert", "", "certificate of a PEM --key")
	pinEnv := fs.String("pin-env", "", "environment variable holding the PKCS#12 password (one for every --key)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parzelle osci inspect [--key FILE]... [--pin-env VAR] MESSAGE\n\nShows an OSCI 1.2 request as captured (the HTTP body): its order, ControlBlock, header blocks,\ncertificates, whether the client signature verifies and what it covers, and its attachments.\nWith keys it decrypts the transport layer and the content layer. Exit status 1 when the\nrequest would be refused, naming the OSCI feedback code.")
		fs.PrintDefaults()
	}
	file, err := oneFile(fs, args)
	if err != nil {
		return err
	}
	pin, err := pinFromEnv(*pinEnv)
	if err != nil {
		return err
	}
	var kps []*keys.KeyPair
	for _, k := range keyFiles {
		kp, err := keys.LoadFile(k, *cert, pin)
		if err != nil {
			return err
		}
		kps = append(kps, kp)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	w := &lineWriter{w: stdout}
	r, err := osci.ParseRequest(data, osci.Options{Keys: kps})
	var refusal *osci.Error
	if errors.As(err, &refusal) && (refusal.Code == osci.CodeSignatureInvalid || refusal.Code == osci.CodeNotAllSigned) {
		// Show the request all the same.
		r, _ = osci.ParseRequest(data, osci.Options{Keys: kps, SkipSignature: true})
	}
	if r == nil {
		return fmt.Errorf("%s: refused: %w", file, err)
	}
	w.printf("order:        %s (in the %s)", r.Order, map[bool]string{true: "body", false: "header"}[r.Order.InBody()])
	if t := r.Transport; t != nil {
		w.printf("transport:    encrypted, %s, decrypted with the key of %s", t.Algorithm, t.Recipient.Certificate().Subject)
	} else {
		w.printf("transport:    plain")
	}
	c := r.Control
	w.printf("control:      ConversationId %s, SequenceNumber %s, Challenge %s, Response %s",
		orDash(c.ConversationID), orDash(map[bool]string{true: fmt.Sprint(c.SequenceNumber)}[c.SequenceNumber >= 0]), orDash(c.Challenge), orDash(c.Response))
	var names []string
	for _, h := range r.Headers {
		id, _ := h.Attribute("Id")
		names = append(names, h.Name.Local+orEmpty(" #", id))
	}
	w.printf("headers:      %s", strings.Join(names, ", "))
	if len(r.Languages) > 0 {
		w.printf("languages:    %s", strings.Join(r.Languages, " "))
	}
	roles := make([]string, 0, len(r.Certificates))
	for role := range r.Certificates {
		roles = append(roles, role)
	}
	slices.Sort(roles)
	for _, role := range roles {
		for _, cert := range r.Certificates[role] {
			w.printf("certificate:  %s: %s", role, describeCertificate(cert))
		}
	}
	switch {
	case refusal != nil:
		w.printf("signature:    REFUSED %s: %s", refusal.Code, refusal.Detail)
	case r.Signature == nil:
		w.printf("signature:    none (unsigned request)")
	default:
		var refs []string
		for _, ref := range r.Signature.References {
			refs = append(refs, ref.URI)
		}
		w.printf("signature:    verifies, by %s (%s), covering %s", r.Signer().Subject, r.Signature.Method, strings.Join(refs, " "))
	}
	for _, p := range r.MIME.Parts {
		if p != r.MIME.Root() {
			w.printf("attachment:   cid:%s, %s, %d bytes", p.ContentID, orDash(p.Header.Get("Content-Type")), len(p.Body))
		}
	}
	showContent(w, r, kps)
	if w.err != nil {
		return w.err
	}
	if refusal != nil {
		return fmt.Errorf("%s: would be refused with %s", file, refusal.Code)
	}
	return nil
}

// showContent prints the content layer: each encrypted content (decrypted
// when a key fits) and the contents of the content containers.
func showContent(w *lineWriter, r *osci.Request, kps []*keys.KeyPair) {
	pkg := r.Body.Child(osci.Namespace, "ContentPackage")
	if pkg == nil {
		return
	}
	for _, el := range pkg.Children {
		switch {
		case el.Name.Space == xmlenc.Namespace && el.Name.Local == "EncryptedData":
			res, err := xmlenc.Decrypt(el, xmlenc.DecryptOptions{Keys: kps, Resolve: r.MIME.Resolve, Document: r.Envelope.Root})
			if err != nil {
				w.printf("content:      encrypted, not decrypted: %v", err)
				continue
			}
			w.printf("content:      encrypted (%s), decrypted with the key of %s", res.Algorithm, res.Recipient.Certificate().Subject)
			cc, err := xmlsafe.Parse(bytes.NewReader(res.Plaintext), xmlsafe.Options{})
			if err != nil {
				w.printf("              the plaintext is no XML: %v", err)
				continue
			}
			showContainer(w, cc, r)
		case el.Name.Space == osci.Namespace && el.Name.Local == "ContentContainer":
			w.printf("content:      plain")
			showContainer(w, el, r)
		}
	}
}

// showContainer prints a content container's contents: inline content
// (base64 decoded, shortened) and attachments, encrypted ones decrypted
// where their key travels in the container.
func showContainer(w *lineWriter, cc *xmlsafe.Element, r *osci.Request) {
	for _, c := range cc.Children {
		switch {
		case c.Name.Local == "Content":
			if b := c.Child(osci.Namespace, "Base64Content"); b != nil {
				text, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b.Text), ""))
				if err != nil {
					w.printf("              Content: not base64: %v", err)
					continue
				}
				w.printf("              Content: %s", quoteContent(text))
			} else if href, ok := c.Attribute("href"); ok {
				w.printf("              Content: attachment %s", href)
			}
		case c.Name.Space == xmlenc.Namespace && c.Name.Local == "EncryptedData":
			res, err := xmlenc.Decrypt(c, xmlenc.DecryptOptions{Resolve: r.MIME.Resolve})
			if err != nil {
				w.printf("              encrypted attachment, not decrypted: %v", err)
				continue
			}
			w.printf("              encrypted attachment: %s", quoteContent(res.Plaintext))
		case c.Name.Space == xmldsig.Namespace && c.Name.Local == "Signature":
			// The math, with the certificates the request carries pinned:
			// whom to trust as an author is the reader's decision.
			var carried []*x509.Certificate
			for _, certs := range r.Certificates {
				carried = append(carried, certs...)
			}
			v := &xmldsig.Verifier{Trust: keys.NewTrustStore(carried), Resolve: r.MIME.Resolve}
			if res, err := v.Verify(r.Envelope, c); err != nil {
				w.printf("              content signature: REFUSED: %v", err)
			} else {
				w.printf("              content signature: verifies, by %s", res.Certificate.Subject)
			}
		}
	}
}

func describeCertificate(c *x509.Certificate) string {
	return fmt.Sprintf("%s, %s to %s", c.Subject, c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"))
}

// quoteContent quotes up to 200 bytes of content.
func quoteContent(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q… (%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orEmpty(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// lineWriter prints lines and keeps the first write error.
type lineWriter struct {
	w   io.Writer
	err error
}

func (l *lineWriter) printf(format string, args ...any) {
	if l.err == nil {
		_, l.err = fmt.Fprintf(l.w, format+"\n", args...)
	}
}
