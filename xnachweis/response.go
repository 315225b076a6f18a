package xnachweis

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/parzelle/parzelle/tenant"
)

// The code list values the answers carry besides the error codes. The
// XNachweis code lists for agent classification, levels of assurance,
// languages and media types are not published with the schema; these are
// the values the specification's examples use.
const (
	statusListURI       = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType"
	statusListVersion   = "4.0"
	statusSuccess       = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
	statusFailure       = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
	severityError       = "urn:oasis:names:tc:ebxmlregrep:ErrorSeverityType:Error"
	messageTypesListURI = "urn:xoev-de:xnachweis:codeliste:messagetypes"
	providerClass       = "EP"
	defaultListVersion  = "1"
)

// Product names this node in the answers' produkt attributes.
var Product = struct{ Name, Vendor, Version string }{"Parzelle", "Parzelle", "dev"}

// answer is what an answer says about its request and parties, whatever
// its kind.
type answer struct {
	messageType string
	requestID   string
	test        bool
	// reader is the answer's leser (the request's autor), author its
	// autor (the request's leser).
	reader, author Behoerde
	provider       tenant.EvidenceAgent
	requesters     []Agent
	now            time.Time
}

// answerFor prepares the answer to r (nil for a request that could not be
// read) from the tenant's provider; fallback stands in for the requester
// when the request names none.
func answerFor(r *Request, provider tenant.EvidenceAgent, fallback Agent, failed bool, now time.Time) *answer {
	a := &answer{provider: provider, now: now.UTC(), requestID: "urn:uuid:00000000-0000-0000-0000-000000000000"}
	types := answerTypes[RequestNational]
	if r != nil {
		if t, ok := answerTypes[r.Type]; ok {
			types = t
		}
		if uuidURN(r.ID) {
			a.requestID = r.ID
		}
		a.test = r.Test
		a.reader, a.author, a.requesters = r.Author, r.Reader, r.Requesters
	}
	a.messageType = types[0]
	if failed {
		a.messageType = types[1]
	}
	if a.reader.ID == "" {
		a.reader = Behoerde{Directory: "DVDV", DirectoryVersion: "2", ID: orUnknown(fallback.ID), Name: orUnknown(fallback.Name)}
	}
	if a.author.ID == "" {
		a.author = Behoerde{Directory: "DVDV", DirectoryVersion: "2", ID: provider.ID, Name: provider.Name}
	}
	var named []Agent
	for _, q := range a.requesters {
		if q.ID != "" && q.Scheme != "" {
			named = append(named, q)
		}
	}
	if a.requesters = named; len(a.requesters) == 0 {
		a.requesters = []Agent{fallback}
	}
	return a
}

func orUnknown(s string) string {
	if s == "" {
		return "unbekannt"
	}
	return s
}

// xmlWriter writes an answer.
type xmlWriter struct{ strings.Builder }

func (w *xmlWriter) text(s string) { w.WriteString(escape(s)) }

// el writes <name>text</name>.
func (w *xmlWriter) el(name, text string) {
	w.WriteString("<" + name + ">")
	w.text(text)
	w.WriteString("</" + name + ">")
}

// code writes a code element: <name listURI? listVersionID><code>…</code></name>.
func (w *xmlWriter) code(name, listURI, listVersion, value string) {
	w.WriteString("<" + name)
	if listURI != "" {
		w.WriteString(` listURI="` + escape(listURI) + `"`)
	}
	w.WriteString(` listVersionID="` + escape(or(listVersion, defaultListVersion)) + `"><code>`)
	w.text(value)
	w.WriteString("</code></" + name + ">")
}

// multilingual writes a String.Multilingual.
func (w *xmlWriter) multilingual(name, value, lang string) {
	w.WriteString("<" + name + ">")
	w.el("xn-bdt:value", value)
	w.code("xn-bdt:lang", "", defaultListVersion, or(lang, "de"))
	w.WriteString("</" + name + ">")
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// open writes the root element and the message header.
func (a *answer) open(w *xmlWriter) {
	w.message(a.messageType, ` produktversion="`+escape(Product.Version)+`"`, ` requestid="`+escape(a.requestID)+`"`, a.test, newUUID(), a.now, a.reader, a.author)
}

// message writes the XML declaration, the root element's start tag (the
// namespaces, the base message's attributes and attrs) and the message
// header (nachrichtenkopf).
func (w *xmlWriter) message(typ, product, attrs string, test bool, uuid string, now time.Time, reader, author Behoerde) {
	w.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.WriteString(`<xn-de:` + typ + ` xmlns:xn-de="` + NSDE + `" xmlns:xn-bk="` + NSBK + `" xmlns:xn-bdt="` + NSBDT +
		`" xmlns:xn-eu-edm="` + NSEDM + `" xmlns:bn-g2g="` + NSG2G + `" xmlns:bn-beh="` + NSBEH + `"`)
	w.WriteString(` produkt="` + escape(Product.Name) + `" produkthersteller="` + escape(Product.Vendor) + `"` + product + ` standard="XNachweis" version="1.2.0"`)
	if test {
		w.WriteString(` test="true"`)
	}
	w.WriteString(attrs + `><xn-bk:nachrichtenkopf><xn-bk:identifikation.nachricht>`)
	w.el("xn-bk:nachrichtenUUID", uuid)
	w.code("xn-bk:nachrichtentyp", messageTypesListURI, "1.2.0", typ)
	w.el("xn-bk:erstellungszeitpunkt", now.UTC().Format(time.RFC3339))
	w.WriteString(`</xn-bk:identifikation.nachricht>`)
	for _, b := range []struct {
		el string
		b  Behoerde
	}{{"bn-g2g:leser", reader}, {"bn-g2g:autor", author}} {
		w.WriteString("<" + b.el + ">")
		w.code("bn-beh:verzeichnisdienst", "", or(b.b.DirectoryVersion, "2"), or(b.b.Directory, "DVDV"))
		w.el("bn-beh:kennung", b.b.ID)
		w.el("bn-beh:name", orUnknown(b.b.Name))
		w.WriteString("</" + b.el + ">")
	}
	w.WriteString(`</xn-bk:nachrichtenkopf>`)
}

// parties writes the status, the identifiers, and provider and requesters
// (for an error response the provider as ErrorProvider).
func (a *answer) parties(w *xmlWriter, failed bool) {
	status := statusSuccess
	if failed {
		status = statusFailure
	}
	w.code("xn-de:status", statusListURI, statusListVersion, status)
	w.el("xn-de:SpecificationIdentifier", Specification)
	w.el("xn-de:EvidenceResponseIdentifier", newUUID())
	w.el("xn-de:IssueDateTime", a.now.Format(time.RFC3339))
	providerEl := "xn-de:EvidenceProvider"
	if failed {
		providerEl = "xn-de:ErrorProvider"
	}
	a.agent(w, providerEl, Agent{Scheme: a.provider.Scheme, ID: a.provider.ID, Name: a.provider.Name, Classification: providerClass})
	for _, q := range a.requesters {
		a.agent(w, "xn-de:EvidenceRequester", q)
	}
}

func (a *answer) agent(w *xmlWriter, el string, g Agent) {
	w.WriteString("<" + el + `><xn-bk:Identifier schemeID="` + escape(g.Scheme) + `">`)
	w.text(g.ID)
	w.WriteString(`</xn-bk:Identifier>`)
	w.multilingual("xn-bk:Name", orUnknown(g.Name), g.NameLang)
	w.code("xn-eu-edm:Classification", "", g.ClassificationVersion, or(g.Classification, "ER"))
	w.WriteString("</" + el + ">")
}

// errorResponse is the error response to r for the failure.
func (a *answer) errorResponse(f *Failure) []byte {
	var w xmlWriter
	a.open(&w)
	a.parties(&w, true)
	w.WriteString(`<xn-de:Exception>`)
	w.code("xn-bk:Code", "", CodeListVersion, f.Code.Value)
	w.el("xn-bk:Detail", f.detail())
	w.el("xn-bk:Timestamp", a.now.Format(time.RFC3339))
	w.el("xn-bk:Severity", severityError)
	w.WriteString(`</xn-de:Exception></xn-de:` + a.messageType + ">\n")
	return []byte(w.String())
}

// evidence is one evidence document of a response.
type evidence struct {
	typ      *tenant.EvidenceType
	document []byte
	issued   time.Time
}

// response is the response to r carrying the evidence.
func (a *answer) response(r *Request, ev evidence) []byte {
	var w xmlWriter
	a.open(&w)
	a.parties(&w, false)
	w.WriteString(`<xn-de:EvidenceAvailability><xn-de:RegistryObjectList>`)
	w.el("xn-bk:id", "urn:uuid:"+newUUID())
	w.WriteString(`<xn-bk:EvidenceMetadata>`)
	w.el("xn-bk:IssuingDate", ev.issued.In(berlin).Format(time.DateOnly))
	w.WriteString(`<xn-bk:IssuingAuthority><xn-bk:Identifier schemeID="` + escape(a.provider.Scheme) + `">`)
	w.text(a.provider.ID)
	w.WriteString(`</xn-bk:Identifier>`)
	w.multilingual("xn-bk:Name", a.provider.Name, "de")
	w.WriteString(`</xn-bk:IssuingAuthority><xn-bk:Distribution>`)
	w.code("xn-bk:Format", "", defaultListVersion, tenant.EvidenceFormatXML)
	w.WriteString(`</xn-bk:Distribution><xn-bk:IsConformantTo>`)
	w.el("xn-bk:EvidenceTypeClassification", ev.typ.Classification)
	w.multilingual("xn-bk:Title", ev.typ.Title, "de")
	w.WriteString(`</xn-bk:IsConformantTo></xn-bk:EvidenceMetadata>`)
	w.WriteString(`<xn-bk:RepositoryItem><xn-bk:RepositoryItem>`)
	w.WriteString(base64.StdEncoding.EncodeToString(ev.document))
	w.WriteString(`</xn-bk:RepositoryItem></xn-bk:RepositoryItem><xn-bk:LegalOrNaturalPerson>`)
	// The subject as the request identified it: the response tells the
	// requester no more about the person than the evidence does.
	switch {
	case r.Person != nil:
		p := r.Person
		w.WriteString(`<xn-bk:NaturalPerson>`)
		w.el("xn-bk:DateOfBirth", p.DateOfBirth)
		w.el("xn-bk:FamilyName", p.FamilyName)
		w.el("xn-bk:GivenName", p.GivenName)
		w.code("xn-bk:LevelOfAssurance", "", p.LoAVersion, p.LoA)
		w.WriteString(`</xn-bk:NaturalPerson>`)
	case r.Business != nil:
		b := r.Business
		w.WriteString(`<xn-bk:LegalPerson>`)
		w.el("xn-bk:LegalName", b.LegalName)
		w.code("xn-bk:LevelOfAssurance", "", b.LoAVersion, b.LoA)
		w.WriteString(`</xn-bk:LegalPerson>`)
	}
	w.WriteString(`</xn-bk:LegalOrNaturalPerson></xn-de:RegistryObjectList></xn-de:EvidenceAvailability></xn-de:` + a.messageType + ">\n")
	return []byte(w.String())
}

// escape escapes text and attribute values.
func escape(s string) string {
	if !strings.ContainsAny(s, `<>&"'`+"\r\t") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		case '\r':
			b.WriteString("&#xD;")
		case '\t':
			b.WriteString("&#x9;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// uuidURN reports whether s is a urn:uuid: URN as the schema's UUID.URN.
func uuidURN(s string) bool {
	rest, ok := strings.CutPrefix(s, "urn:uuid:")
	return ok && uuidPattern.MatchString(rest)
}

var berlin, _ = time.LoadLocation("Europe/Berlin")
