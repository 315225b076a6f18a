package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xmlschema"
)

// cmdXML signs, verifies, encrypts, decrypts and validates XML files, for
// operators and interoperability tests.
func cmdXML(args []string) error {
	if len(args) == 0 {
		return errors.New("want sign, verify, encrypt, decrypt or validate")
	}
	switch args[0] {
	case "sign":
		return xmlSign(args[1:], os.Stdout)
	case "verify":
		return xmlVerify(args[1:], os.Stdout)
	case "encrypt":
		return xmlEncrypt(args[1:], os.Stdout)
	case "decrypt":
		return xmlDecrypt(args[1:], os.Stdout)
	case "validate":
		return xmlValidate(args[1:], os.Stdout)
	}
	return fmt.Errorf("unknown subcommand %q (want sign, verify, encrypt, decrypt or validate)", args[0])
}

// oneFile parses flags and returns the single input file.
func oneFile(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return "", flag.ErrHelp
	}
	return fs.Arg(0), nil
}

// loadKeyPair reads a PEM key with its certificate, or a PKCS#12 file whose
// password is in the environment variable pinEnv.
func loadKeyPair(key, cert, pinEnv string) (*keys.KeyPair, error) {
	if key == "" {
		return nil, errors.New("--key is required")
	}
	pin, err := pinFromEnv(pinEnv)
	if err != nil {
		return nil, err
	}
	return keys.LoadFile(key, cert, pin)
}

// pinFromEnv returns the PKCS#12 password held by the environment variable
// name (--pin-env); no name means no password.
func pinFromEnv(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	pin, ok := os.LookupEnv(name)
	if !ok {
		return "", fmt.Errorf("the environment variable %s (--pin-env) is not set", name)
	}
	return pin, nil
}

var signatureMethods = map[string]string{
	"": "", "rsa-sha256": xmldsig.RSASHA256, "rsa-sha512": xmldsig.RSASHA512,
	"ecdsa-sha256": xmldsig.ECDSASHA256, "rsa-pss-sha256": xmldsig.RSAPSSSHA256,
}

func xmlSign(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parzelle xml sign", flag.ContinueOnError)
	key := fs.String("key", "", "private key: PEM, or PKCS#12 (.p12/.pfx)")
	cert := fs.String("cert", "", "certificate chain (PEM, leaf first) for a PEM key")
	pinEnv := fs.String("pin-env", "", "environment variable holding the PKCS#12 password")
	method := fs.String("method", "", "rsa-sha256, rsa-sha512, rsa-pss-sha256 or ecdsa-sha256 (default: by key type)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parzelle xml sign --key KEY.pem --cert CERT.pem IN.xml > SIGNED.xml\n\nWrites IN.xml with an enveloped signature (exclusive C14N, SHA-256, certificate in KeyInfo) as the root's first child.")
		fs.PrintDefaults()
	}
	in, err := oneFile(fs, args)
	if err != nil {
		return err
	}
	uri, ok := signatureMethods[*method]
	if !ok {
		return fmt.Errorf("unknown --method %q", *method)
	}
	kp, err := loadKeyPair(*key, *cert, *pinEnv)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	signed, err := (&xmldsig.Signer{Key: kp.Key, Certificates: kp.Chain, Method: uri}).SignEnveloped(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	_, err = stdout.Write(signed)
	return err
}

func xmlVerify(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parzelle xml verify", flag.ContinueOnError)
	var trust listFlag
	fs.Var(&trust, "trust", "trusted CA or signer certificate (PEM or DER); repeatable")
	at := fs.String("at", "", "signing time the certificate must be valid at (RFC 3339; default now)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parzelle xml verify --trust CA-OR-CERT.pem IN.xml\n\nExits 0 only when the signature is valid and made by a trusted certificate, and prints what was signed. A document whose root carries no signature has each ds:Signature in it verified (references to MIME parts are refused).")
		fs.PrintDefaults()
	}
	in, err := oneFile(fs, args)
	if err != nil {
		return err
	}
	if len(trust) == 0 {
		return errors.New("give at least one --trust certificate")
	}
	var anchors []*x509.Certificate
	for _, f := range trust {
		certs, err := keys.LoadCertificates(f)
		if err != nil {
			return err
		}
		anchors = append(anchors, certs...)
	}
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore(anchors)}
	if *at != "" {
		if v.At, err = time.Parse(time.RFC3339, *at); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	doc, err := xmldsig.ParseDocument(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	enveloped := len(doc.Root.ChildrenNamed(xmldsig.Namespace, "Signature")) > 0
	sigs := findSignatures(doc.Root)
	if enveloped {
		sigs = doc.Root.ChildrenNamed(xmldsig.Namespace, "Signature")[:1] // VerifyEnvelopedDocument checks there is one
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%s: no ds:Signature found", in)
	}
	for _, sig := range sigs {
		var res *xmldsig.Result
		if enveloped {
			res, err = v.VerifyEnvelopedDocument(doc)
		} else {
			res, err = v.Verify(doc, sig)
		}
		if err != nil {
			fmt.Fprintf(stdout, "INVALID signature at line %d: %v\n", sig.Line, err)
			return exitError{1}
		}
		fmt.Fprintf(stdout, "valid signature at line %d\n  signed by: %s\n  issued by: %s\n  method:    %s\n", sig.Line, res.Certificate.Subject, res.Certificate.Issuer, res.Method)
		for _, r := range res.References {
			switch {
			case r.URI == "":
				fmt.Fprintf(stdout, "  signed:    the whole document, root <%s> (the signature itself excluded)\n", qualified(r.Element))
			case r.Element != nil:
				fmt.Fprintf(stdout, "  signed:    %s = <%s> at line %d\n", r.URI, qualified(r.Element), r.Element.Line)
			default:
				fmt.Fprintf(stdout, "  signed:    %s (%d bytes)\n", r.URI, len(r.Data))
			}
		}
	}
	return nil
}

func qualified(el *xmlsafe.Element) string {
	if el.Prefix == "" {
		return el.Name.Local
	}
	return el.Prefix + ":" + el.Name.Local
}

func findSignatures(el *xmlsafe.Element) []*xmlsafe.Element {
	if el.Name.Space == xmldsig.Namespace && el.Name.Local == "Signature" {
		return []*xmlsafe.Element{el}
	}
	var out []*xmlsafe.Element
	for _, c := range el.Children {
		out = append(out, findSignatures(c)...)
	}
	return out
}

func xmlValidate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parzelle xml validate", flag.ContinueOnError)
	configPath := fs.String("config", defaultConfig(), "node configuration file (its schema directories provide the catalogs)")
	schema := fs.String("schema", "", "the official XSD to validate against")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parzelle xml validate [--config FILE] --schema SCHEMA.xsd IN.xml\n\nExits 0 when IN.xml passes the hardened parser and is valid against the schema. The schema's imports resolve through the catalogs in the configured schema directories, never the network; problems are listed with line and column.")
		fs.PrintDefaults()
	}
	in, err := oneFile(fs, args)
	if err != nil {
		return err
	}
	if *schema == "" {
		return errors.New("--schema is required")
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	if _, err := xmlsafe.Parse(bytes.NewReader(data), xmlsafe.Options{}); err != nil {
		fmt.Fprintf(stdout, "INVALID %s: %v\n", in, err)
		return exitError{1}
	}
	reg, err := xmlschema.Load(cfg.Paths.Schemas, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	err = reg.ValidateFile(*schema, data)
	var ve *xmlschema.ValidationError
	switch {
	case errors.As(err, &ve):
		fmt.Fprintf(stdout, "INVALID %s against %s (%d problems):\n", in, *schema, ve.Total)
		for _, p := range ve.Problems {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		return exitError{1}
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "valid: %s against %s\n", in, *schema)
	return nil
}
