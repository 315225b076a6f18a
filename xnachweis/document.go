package xnachweis

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// NSEvidence is the namespace of the evidence documents this node issues:
// a Meldebescheinigung or a Gewerbeauskunft, signed by the issuing tenant
// (an enveloped XML signature, the first child of the root).
//
//	<nw:Meldebescheinigung xmlns:nw="urn:parzelle:nachweis:1">
//	  <ds:Signature>…</ds:Signature>
//	  <nw:Ausstellung>
//	    <nw:NachweisID>…</nw:NachweisID> <nw:Ausgestellt>…</nw:Ausgestellt>
//	    <nw:Stichtag>…</nw:Stichtag>     (the day the data is valid on)
//	    <nw:Behoerde schemeID="…" id="…">name</nw:Behoerde>
//	    <nw:Anfrage>urn:uuid:…</nw:Anfrage> <nw:Rechtsgrundlage>…</nw:Rechtsgrundlage>
//	  </nw:Ausstellung>
//	  <nw:Person> one element per field of the evidence type, named as the
//	    register attribute: text, a list of elements, or an address's parts
//	  </nw:Person>
//	</nw:Meldebescheinigung>
const NSEvidence = "urn:parzelle:nachweis:1"

// documentRoots are the root elements of the document kinds, and the
// element holding the subject.
var documentRoots = map[string][2]string{
	"meldebescheinigung": {"Meldebescheinigung", "Person"},
	"gewerbeauskunft":    {"Gewerbeauskunft", "Betrieb"},
}

// issue is one evidence document to make.
type issue struct {
	typ        *tenant.EvidenceType
	provider   tenant.EvidenceAgent
	requestID  string
	legalBasis string
	day        string
	now        time.Time
	attrs      register.Attributes
}

// document renders the unsigned evidence document: only the type's
// fields, in the order the type lists them.
func (i issue) document() []byte {
	roots := documentRoots[i.typ.Document]
	var w xmlWriter
	w.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.WriteString(`<nw:` + roots[0] + ` xmlns:nw="` + NSEvidence + `">`)
	w.WriteString(`<nw:Ausstellung>`)
	w.el("nw:NachweisID", newUUID())
	w.el("nw:Ausgestellt", i.now.UTC().Format(time.RFC3339))
	w.el("nw:Stichtag", i.day)
	w.WriteString(`<nw:Behoerde schemeID="` + escape(i.provider.Scheme) + `" id="` + escape(i.provider.ID) + `">`)
	w.text(i.provider.Name)
	w.WriteString(`</nw:Behoerde>`)
	w.el("nw:Nachweistyp", i.typ.Title)
	w.el("nw:Anfrage", i.requestID)
	w.el("nw:Rechtsgrundlage", i.legalBasis)
	w.WriteString(`</nw:Ausstellung><nw:` + roots[1] + `>`)
	for _, f := range i.typ.Fields {
		if v, ok := i.attrs[f]; ok && v != nil {
			field(&w, f, v)
		}
	}
	w.WriteString(`</nw:` + roots[1] + `></nw:` + roots[0] + ">\n")
	return []byte(w.String())
}

// elementName keeps attribute and field names that are XML names; the
// register's names all are.
var elementName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)

// field renders one attribute: a value, a list (one element per item) or
// an object (its fields in name order).
func field(w *xmlWriter, name string, v any) {
	if !elementName.MatchString(name) {
		return
	}
	switch v := v.(type) {
	case []any:
		for _, item := range v {
			field(w, name, item)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.WriteString("<nw:" + name + ">")
		for _, k := range keys {
			if v[k] != nil {
				field(w, k, v[k])
			}
		}
		w.WriteString("</nw:" + name + ">")
	case string:
		w.el("nw:"+name, v)
	case bool, float64, int, int64:
		w.el("nw:"+name, fmt.Sprint(v))
	default:
		w.el("nw:"+name, strings.TrimSpace(fmt.Sprint(v)))
	}
}
