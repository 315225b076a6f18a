package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/xmlenc"
	"github.com/parzelle/parzelle/xmlsafe"
)

// xmlEncrypt is `parzelle xml encrypt`: it writes the document with one
// element, or the root element's content, encrypted to stdout.
func xmlEncrypt(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parzelle xml encrypt", flag.ContinueOnError)
	var certFiles listFlag
	fs.Var(&certFiles, "cert", "recipient certificate, PEM or DER, RSA (repeatable: one EncryptedKey each)")
	element := fs.String("element", "", "encrypt the first element with this Id, or else this local name (default: the root element's content)")
	algorithm := fs.String("algorithm", "aes256-gcm", "content encryption: aes128-gcm, aes192-gcm, aes256-gcm, aes128-cbc, aes192-cbc, aes256-cbc")
	transport := fs.String("key-transport", "rsa-oaep", "rsa-oaep (XML Encryption 1.1, SHA-256, MGF1-SHA-256) or rsa-oaep-mgf1p (SHA-1; what xmlsec1 1.2 reads)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parzelle xml encrypt --cert CERT.pem [--cert …] [--element ID-OR-NAME] IN.xml > ENCRYPTED.xml\n\nReplaces the element (Type Element) or the root element's content (Type Content) with an xenc:EncryptedData: AES-256-GCM, the key RSA-OAEP-encrypted for each certificate.")
		fs.PrintDefaults()
	}
	in, err := oneFile(fs, args)
	if err != nil {
		return err
	}
	if len(certFiles) == 0 {
		return errors.New("give at least one --cert of a recipient")
	}
	opt := xmlenc.EncryptOptions{}
	if opt.Algorithm, err = xmlenc.ContentAlgorithm(*algorithm); err != nil {
		return fmt.Errorf("--algorithm: %w", err)
	}
	if opt.KeyTransport, err = xmlenc.KeyTransportAlgorithm(*transport); err != nil {
		return fmt.Errorf("--key-transport: %w", err)
	}
	var recipients []*x509.Certificate
	for _, f := range certFiles {
		certs, err := keys.LoadCertificates(f)
		if err != nil {
			return err
		}
		recipients = append(recipients, certs[0]) // the leaf; a chain after it is ignored
	}
	src, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	root, err := xmlsafe.Parse(bytes.NewReader(src), xmlsafe.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	var out []byte
	if *element == "" {
		out, err = xmlenc.EncryptContent(src, root, recipients, opt)
	} else {
		el := findElement(root, *element)
		if el == nil {
			return fmt.Errorf("%s: no element with Id or local name %q", in, *element)
		}
		out, err = xmlenc.EncryptElement(src, el, recipients, opt)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	_, err = stdout.Write(out)
	return err
}

// findElement returns the element whose Id (Id, ID or id) is name, or else
// the first element in document order whose local name (or prefix:local)
// is name.
func findElement(root *xmlsafe.Element, name string) *xmlsafe.Element {
	var byID, byName *xmlsafe.Element
	var walk func(e *xmlsafe.Element)
	walk = func(e *xmlsafe.Element) {
		for _, a := range []string{"Id", "ID", "id"} {
			if v, ok := e.Attribute(a); ok && v == name && byID == nil {
				byID = e
			}
		}
		if byName == nil && (e.Name.Local == name || e.Prefix != "" && e.Prefix+":"+e.Name.Local == name) {
			byName = e
		}
		for _, c := range e.Children {
			walk(c)
		}
	}
	walk(root)
	if byID != nil {
		return byID
	}
	return byName
}

// xmlDecrypt is `parzelle xml decrypt`: it writes the decrypted document to
// stdout.
func xmlDecrypt(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parzelle xml decrypt", flag.ContinueOnError)
	keyFile := fs.String("key", "", "private key, PEM (PKCS#8, PKCS#1)")
	certFile := fs.String("cert", "", "certificate of the PEM key (optional; lets the EncryptedKey be matched by issuer and serial)")
	p12 := fs.String("p12", "", "PKCS#12 file with key and certificate, instead of --key")
	pinEnv := fs.String("pin-env", "", "environment variable holding the PKCS#12 password")
	refuseCBC := fs.Bool("refuse-cbc", false, "refuse AES-CBC content (no integrity protection)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parzelle xml decrypt --key KEY.pem | --p12 FILE --pin-env VAR  IN.xml > PLAIN.xml\n\nDecrypts every xenc:EncryptedData of Type Element or Content in place and writes the document; a document that is one EncryptedData of another type (binary data) is written as its plaintext.")
		fs.PrintDefaults()
	}
	in, err := oneFile(fs, args)
	if err != nil {
		return err
	}
	kp, err := loadDecryptionKey(*keyFile, *certFile, *p12, *pinEnv)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	opt := xmlenc.DecryptOptions{Keys: []*keys.KeyPair{kp}, RefuseCBC: *refuseCBC}
	root, err := xmlsafe.Parse(bytes.NewReader(src), xmlsafe.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if root.Name.Space == xmlenc.Namespace && root.Name.Local == "EncryptedData" {
		if typ, _ := root.Attribute("Type"); typ != xmlenc.TypeElement && typ != xmlenc.TypeContent {
			opt.Document = root
			res, err := xmlenc.Decrypt(root, opt)
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			_, err = stdout.Write(res.Plaintext)
			return err
		}
	}
	out, n, err := xmlenc.DecryptDocument(src, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: no xenc:EncryptedData to decrypt", in)
	}
	_, err = stdout.Write(out)
	return err
}

// loadDecryptionKey reads a PKCS#12 file (its password from the environment
// variable pinEnv) or a PEM key, with its certificate when one is given.
func loadDecryptionKey(keyFile, certFile, p12, pinEnv string) (*keys.KeyPair, error) {
	switch {
	case p12 != "" && keyFile != "":
		return nil, errors.New("give either --key or --p12, not both")
	case p12 != "":
		pin, err := pinFromEnv(pinEnv)
		if err != nil {
			return nil, err
		}
		return keys.LoadPKCS12(p12, pin)
	case keyFile == "":
		return nil, errors.New("give the decryption key: --key KEY.pem or --p12 FILE --pin-env VAR")
	case strings.HasSuffix(strings.ToLower(keyFile), ".p12") || strings.HasSuffix(strings.ToLower(keyFile), ".pfx"):
		return nil, fmt.Errorf("%s looks like PKCS#12: use --p12 %s --pin-env VAR", keyFile, keyFile)
	case certFile != "":
		return keys.LoadPEM(keyFile, certFile)
	}
	key, err := pki.LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	return &keys.KeyPair{Key: key}, nil
}
