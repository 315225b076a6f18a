package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/xmldsig"
)

// osciClientUsage lists the client commands for operators testing a
// connection to an OSCI 1.2 intermediary.
const osciClientUsage = `usage: parzelle osci send|fetch|cards [FLAGS] ARGS

  send [--subject S] [--attach FILE]... --to CERT DOCUMENT
        store DOCUMENT for the reader whose cipher certificate is CERT: signed by
        --signer, encrypted to the reader; prints the MessageId, the feedback
        and the process card
  fetch [--out DIR] [--trust CERT]...
        collect every delivery of --cipher's postbox, decrypt it, verify its
        author against --trust (none: not verified), write DIR/<MessageId>.xml
  cards MESSAGEID...
        print the process cards of deliveries --signer stored

Every command opens an explicit dialog with the intermediary at --url, signs
with --signer, encrypts to --intermediary-cipher (unless --plain), and checks
that every answer is signed by --intermediary-signature.`

// osciClient runs `parzelle osci send|fetch|cards`.
func osciClient(sub string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parzelle osci "+sub, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), osciClientUsage+"\n\nflags:"); fs.PrintDefaults() }
	url := fs.String("url", "", "the intermediary (a Parzelle node: https://HOST:8443/osci, or /osci/TENANT with --plain)")
	caFile := fs.String("ca", "", "CA of the intermediary's TLS certificate (PEM); default: the system roots")
	tlsCert := fs.String("tls-cert", "", "TLS client certificate (PEM), where the intermediary asks for one")
	tlsKey := fs.String("tls-key", "", "key of --tls-cert (PEM)")
	interCipher := fs.String("intermediary-cipher", "", "the intermediary's cipher certificate (requests are encrypted to it)")
	interSig := fs.String("intermediary-signature", "", "the intermediary's signature certificate (answers must be signed with it)")
	signer := fs.String("signer", "", "the client's signature key: PKCS#12, or PEM with --signer-cert")
	signerCert := fs.String("signer-cert", "", "certificate of a PEM --signer")
	cipher := fs.String("cipher", "", "the client's cipher key (its postbox; answers are encrypted to it): PKCS#12, or PEM with --cipher-cert")
	cipherCert := fs.String("cipher-cert", "", "certificate of a PEM --cipher")
	pinEnv := fs.String("pin-env", "", "environment variable holding the PKCS#12 password")
	plain := fs.Bool("plain", false, "send requests without transport encryption")
	var subject, to, out *string
	var attach, trust listFlag
	switch sub {
	case "send":
		subject = fs.String("subject", "", "the delivery's subject (process card)")
		to = fs.String("to", "", "the reader's cipher certificate (its postbox)")
		fs.Var(&attach, "attach", "attachment file (repeatable)")
	case "fetch":
		out = fs.String("out", ".", "directory for the fetched documents")
		fs.Var(&trust, "trust", "certificate of an author whose signature is accepted (repeatable)")
	}
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *url == "" || *interSig == "" || *signer == "" || *cipher == "" || (!*plain && *interCipher == "") {
		return fmt.Errorf("--url, --intermediary-signature, --signer and --cipher are required, and --intermediary-cipher unless --plain (parzelle osci %s --help)", sub)
	}
	pin, err := pinFromEnv(*pinEnv)
	if err != nil {
		return err
	}
	c := &osci.Client{URL: *url, Plain: *plain}
	if c.Signer, err = keys.LoadFile(*signer, *signerCert, pin); err != nil {
		return err
	}
	if c.Cipher, err = keys.LoadFile(*cipher, *cipherCert, pin); err != nil {
		return err
	}
	if c.IntermediarySignature, err = oneCertificate(*interSig); err != nil {
		return err
	}
	if !*plain {
		if c.IntermediaryCipher, err = oneCertificate(*interCipher); err != nil {
			return err
		}
	}
	tcfg, _, err := pki.ClientTLS(*tlsCert, *tlsKey, *caFile)
	if err != nil {
		return err
	}
	c.HTTP = &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{TLSClientConfig: tcfg}}
	ctx := context.Background()
	s, err := c.Open(ctx)
	if err != nil {
		return explainConnection(err, *url, *caFile)
	}
	switch sub {
	case "send":
		err = osciSend(ctx, s, c, fs.Args(), *subject, *to, attach, stdout)
	case "fetch":
		err = osciFetch(ctx, s, *out, trust, c, stdout)
	case "cards":
		err = osciCards(ctx, s, fs.Args(), stdout)
	}
	if cerr := s.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// certificates reads a file's certificates (PEM or DER, as OSCI .cer
// files come).
func certificates(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return keys.ParseCertificates(data, file)
}

// oneCertificate reads a file's first certificate (PEM or DER).
func oneCertificate(file string) (*x509.Certificate, error) {
	certs, err := certificates(file)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func osciSend(ctx context.Context, s *osci.Session, c *osci.Client, args []string, subject, to string, attach listFlag, stdout io.Writer) error {
	if len(args) != 1 || to == "" {
		return errors.New("send takes --to CERT and one DOCUMENT")
	}
	reader, err := oneCertificate(to)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var atts []osci.Attachment
	for _, f := range attach {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		atts = append(atts, osci.Attachment{ContentID: filepath.Base(f), ContentType: "application/octet-stream", Data: data, Size: int64(len(data))})
	}
	id, err := s.MessageID(ctx)
	if err != nil {
		return err
	}
	content, atts, err := osci.SealContent(doc, atts, c.Signer, []*x509.Certificate{reader})
	if err != nil {
		return err
	}
	a, err := s.Store(ctx, osci.Outgoing{MessageID: id, Subject: subject, Reader: reader, Content: content, Attachments: atts})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "MessageId %s\n", id)
	printFeedback(stdout, a)
	for _, card := range a.ProcessCards {
		printCard(stdout, card)
	}
	if !a.OK() {
		return exitError{1}
	}
	return nil
}

func osciFetch(ctx context.Context, s *osci.Session, out string, trustFiles listFlag, c *osci.Client, stdout io.Writer) error {
	var trust xmldsig.Trust // nil: authors not verified
	if len(trustFiles) > 0 {
		var certs []*x509.Certificate
		for _, f := range trustFiles {
			cs, err := certificates(f)
			if err != nil {
				return err
			}
			certs = append(certs, cs...)
		}
		trust = keys.NewTrustStore(certs)
	}
	n := 0
	for {
		a, more, err := s.Fetch(ctx, "")
		if err != nil {
			return err
		}
		if a == nil {
			break
		}
		n++
		var id string
		if len(a.ProcessCards) > 0 {
			id = a.ProcessCards[0].MessageID
		}
		content, err := osci.OpenContent(a, []*keys.KeyPair{c.Cipher}, trust)
		if err != nil {
			fmt.Fprintf(stdout, "%s  cannot be opened: %v\n", id, err)
			continue
		}
		file := filepath.Join(out, strings.NewReplacer("/", "_", string(os.PathSeparator), "_").Replace(id)+".xml")
		if err := os.WriteFile(file, content.Document, 0o600); err != nil {
			return err
		}
		author := "not verified"
		if content.Author != nil {
			author = "signed by " + content.Author.Subject.String()
		}
		fmt.Fprintf(stdout, "%s  %d bytes → %s (%s)\n", id, len(content.Document), file, author)
		if !more {
			break
		}
	}
	fmt.Fprintf(stdout, "%d fetched (their reception is confirmed as the dialog ends)\n", n)
	return nil
}

func osciCards(ctx context.Context, s *osci.Session, ids []string, stdout io.Writer) error {
	if len(ids) == 0 {
		return errors.New("cards takes MessageIds")
	}
	for _, id := range ids {
		card, err := s.ProcessCard(ctx, id)
		if err != nil {
			return err
		}
		printCard(stdout, card)
	}
	return nil
}

func printFeedback(w io.Writer, a *osci.Answer) {
	for _, code := range a.Feedback {
		fmt.Fprintf(w, "feedback  %s %s\n", code, code.Text("de"))
	}
}

func printCard(w io.Writer, c osci.ProcessCard) {
	stamp := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "card      %s  subject %q  created %s  forwarded %s  received %s\n", c.MessageID, c.Subject, c.Creation.UTC().Format(time.RFC3339), stamp(c.Forwarding), stamp(c.Reception))
}
