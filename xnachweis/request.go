package xnachweis

import (
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"strings"
	"time"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Namespaces of XNachweis 1.2.0 and the XÖV base message it builds on:
// every element lives in the namespace of the module that declares it.
const (
	NSDE  = "urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-de-noots"
	NSBK  = "urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-baukasten"
	NSBDT = "urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-basisdatentypen"
	NSEDM = "urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-eu-edm"
	NSG2G = "http://xoev.de/schemata/basisnachricht/g2g/1_1"
	NSBEH = "http://xoev.de/schemata/basisnachricht/behoerde/1_1"
)

// The message types this data provider answers, and its answers to them.
const (
	RequestNational = "DE.EvidenceRequest.0101"
	RequestEU       = "DE.EvidenceRequest.0301"
)

// Specification is the SpecificationIdentifier of XNachweis 1.2.0.
const Specification = "urn:xoev-de:bva:standard:xnachweis_1.2.0"

// answerTypes are the response and error response of each request type.
var answerTypes = map[string][2]string{
	RequestNational: {"DE.EvidenceResponse.0102", "DE.EvidenceErrorResponse.0103"},
	RequestEU:       {"DE.EvidenceResponse.0302", "DE.EvidenceErrorResponse.0303"},
}

// DefaultMaxRequest bounds a request's size: an evidence request is a few
// kilobytes.
const DefaultMaxRequest = 1 << 20

// Request is an evidence request as the provider reads it.
type Request struct {
	// Type is RequestNational or RequestEU.
	Type string
	// ID is the request's id attribute (urn:uuid:…), which the answer's
	// requestid repeats.
	ID            string
	MessageUUID   string
	IssueDateTime time.Time
	Lang          string
	// Reader and Author are the message header's leser (this provider)
	// and autor, which the answer swaps.
	Reader, Author Behoerde
	Requesters     []Agent
	Provider       Agent
	Token          string
	Evidence       RequestedEvidence
	// Person or Business is the subject.
	Person   *Person
	Business *Business
	// Hash is the request hash the IssuedToken must carry (RequestHash).
	Hash []byte
	// Test marks a test message (test="true"), which the answer repeats.
	Test bool
}

// Behoerde is an authority of the XÖV message header.
type Behoerde struct {
	Directory, DirectoryVersion, ID, Name string
}

// Agent is a party of the request: EvidenceRequester or EvidenceProvider.
type Agent struct {
	Scheme, ID, Name, NameLang, Classification, ClassificationVersion string
}

// RequestedEvidence is the evidence type and format asked for.
type RequestedEvidence struct {
	Classification, Identifier, Title, TitleLang, Format string
}

// Person is a natural person as the request identifies them.
type Person struct {
	FamilyName, GivenName, DateOfBirth, PlaceOfBirth, IDNr string
	LoA, LoAVersion                                        string
}

// Business is a legal person as the request identifies it.
type Business struct {
	LegalName, LoA, LoAVersion string
}

// ParseRequest reads an evidence request: hardened (no DTD, bounded size
// and depth), root DE.EvidenceRequest.0101 or .0301. It does not validate
// against the schema (the Service does); a request it cannot read is a
// Failure with CodeMalformed or CodeNotARequest.
func ParseRequest(body []byte, max int64) (*Request, error) {
	if max <= 0 {
		max = DefaultMaxRequest
	}
	if int64(len(body)) > max {
		return nil, fail(CodeTooLarge, "%d bytes, more than the %d a request may have", len(body), max)
	}
	doc, err := xmlsafe.ParseDocument(bytes.NewReader(body), xmlsafe.Options{Preserve: true, Limits: xmlsafe.Limits{MaxBytes: max, MaxDepth: 32, MaxNodes: 2000}})
	if err != nil {
		f := fail(CodeMalformed, "%v", err)
		f.Extra = strings.TrimPrefix(err.Error(), "xmlsafe: ")
		var le *xmlsafe.LimitError
		if errors.As(err, &le) && le.Limit == "size" {
			f.Code = CodeTooLarge
		}
		return nil, f
	}
	root := doc.Root
	if root.Name.Space != NSDE || (root.Name.Local != RequestNational && root.Name.Local != RequestEU) {
		f := fail(CodeNotARequest, "root element {%s}%s", root.Name.Space, root.Name.Local)
		f.Extra = "das Wurzelelement ist {" + root.Name.Space + "}" + root.Name.Local
		return nil, f
	}
	r := &Request{Type: root.Name.Local}
	r.ID = strings.TrimSpace(attr(root, "id"))
	r.Test = attr(root, "test") == "true"
	head := child(root, NSBK, "nachrichtenkopf")
	if head != nil {
		r.MessageUUID = path(head, xn(NSBK, "identifikation.nachricht"), xn(NSBK, "nachrichtenUUID")).TrimmedText()
		r.Reader = behoerde(child(head, NSG2G, "leser"))
		r.Author = behoerde(child(head, NSG2G, "autor"))
	}
	r.Lang = path(root, xn(NSDE, "lang"), xn("", "code")).TrimmedText()
	r.IssueDateTime, _ = time.Parse(time.RFC3339, child(root, NSDE, "IssueDateTime").TrimmedText())
	for _, el := range children(root, NSDE, "EvidenceRequester") {
		r.Requesters = append(r.Requesters, agent(el))
	}
	r.Provider = agent(child(root, NSDE, "EvidenceProvider"))
	tokenEl := child(root, NSDE, "IssuedToken")
	r.Token = tokenEl.TrimmedText()
	if q := child(root, NSDE, "Query"); q != nil {
		if t := child(q, NSBK, "RequestedEvidenceType"); t != nil {
			r.Evidence = RequestedEvidence{
				Classification: child(t, NSBK, "EvidenceTypeClassification").TrimmedText(),
				Identifier:     child(t, NSBK, "Identifier").TrimmedText(),
				Title:          path(t, xn(NSBK, "Title"), xn(NSBDT, "value")).TrimmedText(),
				TitleLang:      path(t, xn(NSBK, "Title"), xn(NSBDT, "lang"), xn("", "code")).TrimmedText(),
				Format:         path(t, xn(NSBK, "DistributedAs"), xn(NSBK, "Format"), xn("", "code")).TrimmedText(),
			}
		}
		if p := path(q, xn(NSBK, "LegalOrNaturalPerson"), xn(NSBK, "NaturalPerson")); p != nil {
			loa := child(p, NSBK, "LevelOfAssurance")
			v := attr(loa, "listVersionID")
			r.Person = &Person{
				FamilyName: child(p, NSBK, "FamilyName").TrimmedText(), GivenName: child(p, NSBK, "GivenName").TrimmedText(),
				DateOfBirth: child(p, NSBK, "DateOfBirth").TrimmedText(), PlaceOfBirth: child(p, NSBK, "PlaceOfBirth").TrimmedText(),
				IDNr: child(p, NSBK, "IDNr").TrimmedText(), LoA: child(loa, "", "code").TrimmedText(), LoAVersion: v,
			}
		}
		if p := path(q, xn(NSBK, "LegalOrNaturalPerson"), xn(NSBK, "LegalPerson")); p != nil {
			loa := child(p, NSBK, "LevelOfAssurance")
			v := attr(loa, "listVersionID")
			r.Business = &Business{LegalName: child(p, NSBK, "LegalName").TrimmedText(), LoA: child(loa, "", "code").TrimmedText(), LoAVersion: v}
		}
	}
	r.Hash = requestHash(doc, tokenEl)
	return r, nil
}

// RequestHash is the hash an IssuedToken carries of its request: SHA-256
// over the exclusive XML canonicalization (without comments) of the whole
// request document, the IssuedToken element left out — so that the
// Vermittlungsstelle hashes the request before it inserts the token.
func RequestHash(body []byte) ([]byte, error) {
	doc, err := xmlsafe.ParseDocument(bytes.NewReader(body), xmlsafe.Options{Preserve: true})
	if err != nil {
		return nil, err
	}
	return requestHash(doc, child(doc.Root, NSDE, "IssuedToken")), nil
}

func requestHash(doc *xmlsafe.Document, token *xmlsafe.Element) []byte {
	h := sha256.New()
	if err := c14n.Document(h, doc, c14n.Method{Exclusive: true}, token); err != nil {
		return nil
	}
	return h.Sum(nil)
}

func behoerde(el *xmlsafe.Element) Behoerde {
	if el == nil {
		return Behoerde{}
	}
	v := attr(child(el, NSBEH, "verzeichnisdienst"), "listVersionID")
	return Behoerde{Directory: path(el, xn(NSBEH, "verzeichnisdienst"), xn("", "code")).TrimmedText(), DirectoryVersion: v,
		ID: child(el, NSBEH, "kennung").TrimmedText(), Name: child(el, NSBEH, "name").TrimmedText()}
}

func agent(el *xmlsafe.Element) Agent {
	if el == nil {
		return Agent{}
	}
	id := child(el, NSBK, "Identifier")
	scheme := attr(id, "schemeID")
	class := child(el, NSEDM, "Classification")
	v := attr(class, "listVersionID")
	return Agent{Scheme: strings.TrimSpace(scheme), ID: id.TrimmedText(),
		Name: path(el, xn(NSBK, "Name"), xn(NSBDT, "value")).TrimmedText(), NameLang: path(el, xn(NSBK, "Name"), xn(NSBDT, "lang"), xn("", "code")).TrimmedText(),
		Classification: child(class, "", "code").TrimmedText(), ClassificationVersion: v}
}

// Nil-safe steps through a parsed request: a request is read before it is
// validated, so any element may be missing.

func child(e *xmlsafe.Element, space, local string) *xmlsafe.Element {
	if e == nil {
		return nil
	}
	return e.Child(space, local)
}

func children(e *xmlsafe.Element, space, local string) []*xmlsafe.Element {
	if e == nil {
		return nil
	}
	return e.ChildrenNamed(space, local)
}

func path(e *xmlsafe.Element, steps ...xml.Name) *xmlsafe.Element {
	for _, s := range steps {
		e = child(e, s.Space, s.Local)
	}
	return e
}

func attr(e *xmlsafe.Element, name string) string {
	if e == nil {
		return ""
	}
	v, _ := e.Attribute(name)
	return strings.TrimSpace(v)
}

func xn(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }
