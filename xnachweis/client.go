package xnachweis

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlsafe"
)

// RequestSpec describes an evidence request for BuildRequest: what a
// requester (or a test, or an operator trying a tenant's configuration)
// sends.
type RequestSpec struct {
	// Type is RequestNational (the default) or RequestEU.
	Type string
	// ID is the request's id (urn:uuid:…); MessageUUID its header's
	// message UUID. Both are made up when empty.
	ID, MessageUUID string
	Requester       Agent
	Provider        Agent
	// Reader and Author are the message header's leser (the provider)
	// and autor (the requester); made from Provider and Requester when
	// empty.
	Reader, Author Behoerde
	Evidence       RequestedEvidence
	Person         *Person
	Business       *Business
	Token          string
	Issued         time.Time
	Test           bool
}

// BuildRequest writes the request. The same spec gives the same bytes, so
// a request built without its token and with it has the same RequestHash.
func BuildRequest(sp RequestSpec) []byte {
	if sp.Type == "" {
		sp.Type = RequestNational
	}
	if sp.ID == "" {
		sp.ID = "urn:uuid:" + newUUID()
	}
	if sp.MessageUUID == "" {
		sp.MessageUUID = newUUID()
	}
	if sp.Issued.IsZero() {
		sp.Issued = time.Now()
	}
	if sp.Reader.ID == "" {
		sp.Reader = Behoerde{Directory: "DVDV", DirectoryVersion: "2", ID: sp.Provider.ID, Name: sp.Provider.Name}
	}
	if sp.Author.ID == "" {
		sp.Author = Behoerde{Directory: "DVDV", DirectoryVersion: "2", ID: sp.Requester.ID, Name: sp.Requester.Name}
	}
	if sp.Evidence.Format == "" {
		sp.Evidence.Format = "application/xml"
	}
	sp.Provider.Classification = or(sp.Provider.Classification, providerClass)
	var w xmlWriter
	a := &answer{now: sp.Issued.UTC()}
	w.message(sp.Type, "", ` id="`+escape(sp.ID)+`"`, sp.Test, sp.MessageUUID, a.now, sp.Reader, sp.Author)
	w.code("xn-de:lang", "", defaultListVersion, "de")
	w.el("xn-de:SpecificationIdentifier", Specification)
	w.el("xn-de:IssueDateTime", a.now.Format(time.RFC3339))
	token := func() { w.el("xn-de:IssuedToken", sp.Token) }
	// 0301 carries the token before the parties, 0101 after them.
	if sp.Type == RequestEU {
		token()
	}
	a.agent(&w, "xn-de:EvidenceRequester", sp.Requester)
	a.agent(&w, "xn-de:EvidenceProvider", sp.Provider)
	if sp.Type != RequestEU {
		token()
	}
	w.WriteString(`<xn-de:Query>`)
	w.el("xn-bk:QueryDefinition", "DocumentQuery")
	w.WriteString(`<xn-bk:RequestedEvidenceType>`)
	w.el("xn-bk:EvidenceTypeClassification", sp.Evidence.Classification)
	w.multilingual("xn-bk:Title", or(sp.Evidence.Title, "Nachweis"), sp.Evidence.TitleLang)
	w.el("xn-bk:Identifier", or(sp.Evidence.Identifier, "00000000-0000-0000-0000-000000000000"))
	w.WriteString(`<xn-bk:DistributedAs>`)
	w.code("xn-bk:Format", "", defaultListVersion, sp.Evidence.Format)
	w.WriteString(`</xn-bk:DistributedAs></xn-bk:RequestedEvidenceType><xn-bk:LegalOrNaturalPerson>`)
	switch {
	case sp.Person != nil:
		p := sp.Person
		w.WriteString(`<xn-bk:NaturalPerson>`)
		w.el("xn-bk:DateOfBirth", p.DateOfBirth)
		w.el("xn-bk:FamilyName", p.FamilyName)
		w.el("xn-bk:GivenName", p.GivenName)
		w.code("xn-bk:LevelOfAssurance", "", p.LoAVersion, or(p.LoA, "High"))
		if p.PlaceOfBirth != "" {
			w.el("xn-bk:PlaceOfBirth", p.PlaceOfBirth)
		}
		if p.IDNr != "" {
			w.el("xn-bk:IDNr", p.IDNr)
		}
		w.WriteString(`</xn-bk:NaturalPerson>`)
	case sp.Business != nil:
		w.WriteString(`<xn-bk:LegalPerson>`)
		w.el("xn-bk:LegalName", sp.Business.LegalName)
		w.code("xn-bk:LevelOfAssurance", "", sp.Business.LoAVersion, or(sp.Business.LoA, "High"))
		w.WriteString(`</xn-bk:LegalPerson>`)
	}
	w.WriteString(`</xn-bk:LegalOrNaturalPerson></xn-de:Query></xn-de:` + sp.Type + ">\n")
	return []byte(w.String())
}

// ClaimsFor returns the claims of a token for the request: requester (the
// first), provider, evidence type, IDNr use and request hash from the
// request; id, issuer and purpose as given.
func ClaimsFor(request []byte, id, issuer, purpose string) (TokenClaims, error) {
	r, err := ParseRequest(request, 0)
	if err != nil {
		return TokenClaims{}, err
	}
	if len(r.Requesters) == 0 {
		return TokenClaims{}, fmt.Errorf("xnachweis: the request names no requester")
	}
	if id == "" {
		id = newUUID()
	}
	return TokenClaims{ID: id, Issuer: issuer, Purpose: purpose, Requester: r.Requesters[0].Scheme + ":" + r.Requesters[0].ID,
		Provider: r.Provider.Scheme + ":" + r.Provider.ID, EvidenceType: r.Evidence.Classification,
		IDNr: r.Person != nil && r.Person.IDNr != "", RequestHash: r.Hash}, nil
}

// SealedRequest builds the request and seals a token for it, as the
// Vermittlungsstelle would: hash the request, mint the token, insert it.
func SealedRequest(sp RequestSpec, key crypto.Signer, issuer, purpose string, now time.Time, ttl time.Duration) ([]byte, error) {
	if sp.ID == "" {
		sp.ID = "urn:uuid:" + newUUID()
	}
	if sp.MessageUUID == "" {
		sp.MessageUUID = newUUID()
	}
	if sp.Issued.IsZero() {
		sp.Issued = now
	}
	sp.Token = ""
	c, err := ClaimsFor(BuildRequest(sp), "", issuer, purpose)
	if err != nil {
		return nil, err
	}
	if sp.Token, err = MintToken(key, c, now, ttl); err != nil {
		return nil, err
	}
	return BuildRequest(sp), nil
}

// InsertToken returns the request with the token as its IssuedToken's text
// (replacing what it held), every other byte unchanged.
func InsertToken(request []byte, token string) ([]byte, error) {
	doc, err := xmlsafe.ParseDocument(bytes.NewReader(request), xmlsafe.Options{})
	if err != nil {
		return nil, fmt.Errorf("xnachweis: the request: %w", err)
	}
	el := child(doc.Root, NSDE, "IssuedToken")
	if el == nil {
		return nil, fmt.Errorf("xnachweis: the request has no IssuedToken element")
	}
	end := bytes.LastIndex(request[:el.End], []byte("</"))
	if el.Inner >= el.End || end < int(el.Inner) {
		// <IssuedToken/>: write it out in full.
		name := request[el.Start+1 : el.End-2]
		name = bytes.TrimSpace(name)
		return slices.Concat(request[:el.Start], []byte("<"), name, []byte(">"+escape(token)+"</"), name, []byte(">"), request[el.End:]), nil
	}
	return slices.Concat(request[:el.Inner], []byte(escape(token)), request[end:]), nil
}

// Exchange is an answer a requester received, checked.
type Exchange struct {
	Status int
	Body   []byte
	// Signer signed the transport (HTTPS) or nil.
	Signer *x509.Certificate
	// Evidence is the evidence document, its signature verified, nil for
	// an error response; Error is the error response's code and detail.
	Evidence      []byte
	EvidenceOf    *x509.Certificate
	Code, Details string
}

// Post sends a request over HTTPS (the client carries the requester's
// certificate) and checks the answer: the transport signature and the
// evidence document's XML signature against the trusted certificates (CAs
// as anchors).
func Post(ctx context.Context, hc *http.Client, baseURL string, request []byte, trust []*x509.Certificate) (*Exchange, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+Path, bytes.NewReader(request))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/xml")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	x := &Exchange{Status: resp.StatusCode, Body: body}
	sig := resp.Header.Get(SignatureHeader)
	if sig == "" {
		return x, fmt.Errorf("xnachweis: HTTP %d without %s: %s", resp.StatusCode, SignatureHeader, strings.TrimSpace(string(body)))
	}
	roots := x509.NewCertPool()
	for _, c := range trust {
		roots.AddCert(c)
	}
	if x.Signer, err = VerifyDetached(sig, body, roots, time.Now()); err != nil {
		return x, err
	}
	return x, x.Check(trust)
}

// Check reads the answer in Body: the evidence document (whose XML
// signature must verify against the trusted certificates) or the error
// code and detail.
func (x *Exchange) Check(trust []*x509.Certificate) error {
	root, err := xmlsafe.Parse(bytes.NewReader(x.Body), xmlsafe.Options{})
	if err != nil {
		return fmt.Errorf("xnachweis: the answer: %w", err)
	}
	if ex := child(root, NSDE, "Exception"); ex != nil {
		x.Code = path(ex, xn(NSBK, "Code"), xn("", "code")).TrimmedText()
		x.Details = child(ex, NSBK, "Detail").TrimmedText()
		return nil
	}
	item := path(root, xn(NSDE, "EvidenceAvailability"), xn(NSDE, "RegistryObjectList"), xn(NSBK, "RepositoryItem"), xn(NSBK, "RepositoryItem"))
	if item == nil {
		return fmt.Errorf("xnachweis: the answer %s carries no evidence", root.Name.Local)
	}
	if x.Evidence, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(item.Text), "")); err != nil {
		return fmt.Errorf("xnachweis: the evidence: %w", err)
	}
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore(trust)}
	_, res, err := v.VerifyEnveloped(x.Evidence)
	if err != nil {
		return fmt.Errorf("xnachweis: the evidence's signature: %w", err)
	}
	x.EvidenceOf = res.Certificate
	return nil
}
