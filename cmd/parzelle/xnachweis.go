package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/xnachweis"
	"github.com/parzelle/parzelle/xta"
)

const xnachweisUsage = `usage: parzelle xnachweis COMMAND ...
commands:
  token   --key FILE --issuer URL --purpose P [--ttl 10m] [--id ID] [--insert] REQUEST.xml
          seal a token for the request as the Vermittlungsstelle would (demos, tests): print
          the token, or with --insert the request carrying it
  request --url URL --cert C --key K [--ca CA] [--trust FILE] --provider ID --requester ID
          --classification URI (--family F --given G --birth YYYY-MM-DD [--birthplace P] [--idnr N] | --legal-name N)
          (--token-key FILE --token-issuer URL --purpose P | --request FILE) [--eu]
          [--via https | --via xta --account ID --reader ID] [--out FILE]
          send an evidence request, check the answer's signatures and print it`

func cmdXNachweis(args []string) error {
	if len(args) == 0 {
		return errors.New(xnachweisUsage)
	}
	switch args[0] {
	case "token":
		return xnachweisToken(args[1:], os.Stdout, time.Now())
	case "request":
		return xnachweisRequest(args[1:], os.Stdout)
	}
	return errors.New(xnachweisUsage)
}

// xnachweisToken seals a token for a request file.
func xnachweisToken(args []string, stdout io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("xnachweis token", flag.ContinueOnError)
	keyFile := fs.String("key", "", "PEM private key of the Vermittlungsstelle's seal (ECDSA P-256, RSA or Ed25519)")
	issuer := fs.String("issuer", "", "the Vermittlungsstelle (iss), as the tenant's evidence.tokens.issuer names it")
	purpose := fs.String("purpose", "", "the purpose of the request")
	id := fs.String("id", "", "the token's id (jti); default: a new UUID")
	ttl := fs.Duration("ttl", 10*time.Minute, "how long the token is valid (at most 1h)")
	insert := fs.Bool("insert", false, "print the request with the token instead of the token")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *keyFile == "" || *issuer == "" || *purpose == "" || fs.NArg() != 1 {
		return errors.New("xnachweis token: --key, --issuer, --purpose and one request file are required\n" + xnachweisUsage)
	}
	key, err := pki.LoadKey(*keyFile)
	if err != nil {
		return err
	}
	request, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := xnachweis.ClaimsFor(request, *id, *issuer, *purpose)
	if err != nil {
		return err
	}
	token, err := xnachweis.MintToken(key, c, now, *ttl)
	if err != nil {
		return err
	}
	if !*insert {
		_, err = fmt.Fprintln(stdout, token)
		return err
	}
	out, err := xnachweis.InsertToken(request, token)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// xnachweisRequest sends an evidence request and prints the checked answer.
func xnachweisRequest(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("xnachweis request", flag.ContinueOnError)
	url := fs.String("url", "https://127.0.0.1:8443", "base URL of the node's transport listener")
	certFile := fs.String("cert", "", "client certificate (PEM) of the requester or connection node")
	keyFile := fs.String("key", "", "client key (PEM)")
	caFile := fs.String("ca", "", "CA of the server certificate (PEM); default: the system roots")
	trustFile := fs.String("trust", "", "certificates (PEM) trusted for the answer's signatures; default: --ca")
	scheme := fs.String("scheme", "urn:cef.eu:names:identifier:EAS:0204", "EAS scheme of provider and requester identifiers")
	providerID := fs.String("provider", "", "the EvidenceProvider's identifier (the tenant's evidence.provider.id)")
	providerName := fs.String("provider-name", "Nachweisliefernde Stelle", "the EvidenceProvider's name")
	requesterID := fs.String("requester", "", "the EvidenceRequester's identifier")
	requesterName := fs.String("requester-name", "Anfragende Stelle", "the EvidenceRequester's name")
	classification := fs.String("classification", "", "the EvidenceTypeClassification asked for")
	title := fs.String("title", "Nachweis", "the evidence type's title")
	family := fs.String("family", "", "the person's family name")
	given := fs.String("given", "", "the person's given names")
	birth := fs.String("birth", "", "the person's birth date (YYYY-MM-DD)")
	birthplace := fs.String("birthplace", "", "the person's birth place (optional)")
	idnr := fs.String("idnr", "", "the person's IDNr (optional)")
	legalName := fs.String("legal-name", "", "the business's name (instead of a person)")
	eu := fs.Bool("eu", false, "send a DE.EvidenceRequest.0301 (EU request through the Intermediäre Plattform)")
	tokenKey := fs.String("token-key", "", "seal a token with this key (as the Vermittlungsstelle)")
	tokenIssuer := fs.String("token-issuer", "", "the Vermittlungsstelle, with --token-key")
	purpose := fs.String("purpose", "", "the purpose, with --token-key")
	requestFile := fs.String("request", "", "send this request as it is instead of building one")
	via := fs.String("via", "https", "https (POST "+xnachweis.Path+") or xta (a message to --reader from --account)")
	account := fs.String("account", "", "xta: the requester's XTA account")
	reader := fs.String("reader", "", "xta: the tenant's evidence identity")
	wait := fs.Duration("wait", time.Minute, "xta: how long to wait for the answer")
	out := fs.String("out", "", "write the evidence document to this file")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *certFile == "" || *keyFile == "" {
		return errors.New("xnachweis request: --cert and --key are required\n" + xnachweisUsage)
	}
	var request []byte
	switch {
	case *requestFile != "":
		var err error
		if request, err = os.ReadFile(*requestFile); err != nil {
			return err
		}
	case *providerID == "" || *requesterID == "" || *classification == "" || (*legalName == "" && (*family == "" || *given == "" || *birth == "")):
		return errors.New("xnachweis request: --provider, --requester, --classification and the subject are required\n" + xnachweisUsage)
	case *tokenKey == "" || *tokenIssuer == "" || *purpose == "":
		return errors.New("xnachweis request: seal a token (--token-key, --token-issuer, --purpose) or send --request FILE\n" + xnachweisUsage)
	default:
		sp := xnachweis.RequestSpec{
			Requester: xnachweis.Agent{Scheme: *scheme, ID: *requesterID, Name: *requesterName},
			Provider:  xnachweis.Agent{Scheme: *scheme, ID: *providerID, Name: *providerName},
			Evidence:  xnachweis.RequestedEvidence{Classification: *classification, Title: *title},
		}
		if *eu {
			sp.Type = xnachweis.RequestEU
		}
		if *legalName != "" {
			sp.Business = &xnachweis.Business{LegalName: *legalName}
		} else {
			sp.Person = &xnachweis.Person{FamilyName: *family, GivenName: *given, DateOfBirth: *birth, PlaceOfBirth: *birthplace, IDNr: *idnr}
		}
		key, err := pki.LoadKey(*tokenKey)
		if err != nil {
			return err
		}
		if request, err = xnachweis.SealedRequest(sp, key, *tokenIssuer, *purpose, time.Now(), 10*time.Minute); err != nil {
			return err
		}
	}
	tcfg, trust, err := pki.ClientTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		return fmt.Errorf("xnachweis request: %w", err)
	}
	if *trustFile != "" {
		if trust, err = pki.LoadCertificates(*trustFile); err != nil {
			return err
		}
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tcfg}}
	ctx := context.Background()
	var x *xnachweis.Exchange
	switch *via {
	case "https":
		x, err = xnachweis.Post(ctx, hc, *url, request, trust)
	case "xta":
		if *account == "" || *reader == "" {
			return errors.New("xnachweis request --via xta: --account and --reader are required")
		}
		x, err = viaXTA(ctx, &xta.Client{HTTP: hc, BaseURL: *url, Account: *account}, *reader, request, trust, *wait)
	default:
		return fmt.Errorf("xnachweis request: --via %q: use https or xta", *via)
	}
	if x != nil && x.Code != "" {
		fmt.Fprintf(stdout, "error response: %s: %s\n", x.Code, x.Details)
	}
	if err != nil {
		return err
	}
	if x.Code != "" {
		return exitError{3}
	}
	if x.Signer != nil {
		fmt.Fprintf(stdout, "transport signature: valid, by %s\n", x.Signer.Subject)
	}
	fmt.Fprintf(stdout, "evidence signature: valid, by %s\n", x.EvidenceOf.Subject)
	if *out != "" {
		if err := os.WriteFile(*out, x.Evidence, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "evidence written to %s\n", *out)
		return nil
	}
	_, err = stdout.Write(x.Evidence)
	return err
}

// viaXTA sends the request as an XTA message and waits for the answer in
// the account's message box.
func viaXTA(ctx context.Context, c *xta.Client, reader string, request []byte, trust []*x509.Certificate, wait time.Duration) (*xnachweis.Exchange, error) {
	id, err := c.CreateMessageID(ctx)
	if err != nil {
		return nil, err
	}
	typ := xnachweis.RequestNational
	if bytes.Contains(request, []byte(xnachweis.RequestEU)) {
		typ = xnachweis.RequestEU
	}
	err = c.Send(ctx, &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: c.Account}, Reader: xta.Party{ID: reader},
		Service: "urn:xoev-de:bva:standard:xnachweis", BusinessScenario: "XNACHWEIS_DATA", MessageType: typ, MessageTypeSchema: xnachweis.NSDE,
		Message: xta.OutgoingContent{ContentType: "application/xml", Encoding: "UTF-8", Filename: typ + ".xml", Data: bytes.NewReader(request), Size: int64(len(request))}})
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(wait); ; {
		rep, err := c.TransportReport(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, r := range rep.Records {
			if r.Code != msgbox.RecordAnswered {
				continue
			}
			// The answer's MessageID follows from the request's.
			answerID, ok := answerOf(r.Reason)
			if !ok {
				return nil, fmt.Errorf("xnachweis: the report does not name the answer: %s", r.Reason)
			}
			m, err := c.GetMessage(ctx, answerID)
			if err != nil {
				return nil, err
			}
			x := &xnachweis.Exchange{Body: m.Contents[0].Data}
			err = x.Check(trust)
			if cerr := c.Close(ctx, answerID); err == nil {
				err = cerr
			}
			return x, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("xnachweis: no answer to %s within %s (its report: status %d)", id, wait, rep.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// answerRef finds the answer's MessageID in the ANSWERED record.
var answerRef = regexp.MustCompile(`als Nachricht (\S+) an `)

func answerOf(reason string) (string, bool) {
	m := answerRef.FindStringSubmatch(reason)
	if m == nil {
		return "", false
	}
	return m[1], true
}
