package xnachweis

import (
	"fmt"
	"net/http"
)

// Code is one error a data provider answers with a DE.EvidenceErrorResponse
// (0103, or 0303 for an EU request): the code in Exception/Code, the
// Detail the requester reads, and the HTTP status of the synchronous path.
//
// XNachweis takes error codes from the code list
// urn:xoev-de:xnachweis:codeliste:nootserrorcodes, which is not published
// yet (the specification's own examples use placeholders). Until it is,
// the node answers with these codes, all in this one table, so that moving
// to the official ones is one edit.
type Code struct {
	Value  string
	Detail string
	Status int
}

// CodeListVersion is the listVersionID written with the codes.
const CodeListVersion = "parzelle-1"

// The codes.
var (
	CodeMalformed       = Code{"XN_MALFORMED", "Die Anfrage ist kein wohlgeformtes XML", http.StatusBadRequest}
	CodeTooLarge        = Code{"XN_REQUEST_TOO_LARGE", "Die Anfrage überschreitet die zulässige Größe", http.StatusRequestEntityTooLarge}
	CodeNotARequest     = Code{"XN_NOT_AN_EVIDENCE_REQUEST", "Die Nachricht ist keine Nachweisanfrage (DE.EvidenceRequest.0101 oder .0301)", http.StatusBadRequest}
	CodeSchemaInvalid   = Code{"XN_SCHEMA_INVALID", "Die Anfrage ist nicht schemakonform zu XNachweis 1.2.0", http.StatusBadRequest}
	CodeProviderUnknown = Code{"XN_PROVIDER_UNKNOWN", "Die angefragte nachweisliefernde Stelle wird von diesem Knoten nicht bedient", http.StatusOK}
	CodeRequester       = Code{"XN_REQUESTER_NOT_ALLOWED", "Die anfragende Stelle ist für diesen Nachweis nicht zugelassen", http.StatusOK}
	CodeTypeNotOffered  = Code{"XN_EVIDENCE_TYPE_NOT_OFFERED", "Der angefragte Nachweistyp wird nicht angeboten", http.StatusOK}
	CodeFormat          = Code{"XN_FORMAT_NOT_OFFERED", "Der Nachweis wird im angefragten Format nicht angeboten", http.StatusOK}
	CodeTokenInvalid    = Code{"XN_TOKEN_INVALID", "Das IssuedToken ist nicht gültig gesiegelt", http.StatusOK}
	CodeTokenMismatch   = Code{"XN_TOKEN_MISMATCH", "Das IssuedToken passt nicht zu dieser Anfrage", http.StatusOK}
	CodeTokenExpired    = Code{"XN_TOKEN_EXPIRED", "Das IssuedToken ist abgelaufen oder noch nicht gültig", http.StatusOK}
	CodeTokenReplayed   = Code{"XN_TOKEN_REPLAYED", "Das IssuedToken wurde bereits verwendet", http.StatusOK}
	CodeQuota           = Code{"XN_QUOTA_EXCEEDED", "Das Kontingent der anfragenden Stelle ist ausgeschöpft", http.StatusOK}
	CodeNoMatch         = Code{"XN_NO_MATCH", "Zu den Identifikationsdaten wurde keine Person gefunden", http.StatusOK}
	CodeAmbiguous       = Code{"XN_AMBIGUOUS_MATCH", "Die Identifikationsdaten passen auf mehrere Personen; bitte weitere Merkmale (IDNr, Geburtsort) angeben", http.StatusOK}
	CodeInternal        = Code{"XN_INTERNAL", "Der Nachweis kann wegen eines technischen Fehlers derzeit nicht bereitgestellt werden", http.StatusOK}
)

// codes are every code, by value.
var codes = map[string]Code{}

func init() {
	for _, c := range []Code{CodeMalformed, CodeTooLarge, CodeNotARequest, CodeSchemaInvalid, CodeProviderUnknown, CodeRequester,
		CodeTypeNotOffered, CodeFormat, CodeTokenInvalid, CodeTokenMismatch, CodeTokenExpired, CodeTokenReplayed, CodeQuota,
		CodeNoMatch, CodeAmbiguous, CodeInternal} {
		codes[c.Value] = c
	}
}

// codeOf returns the code with the value (CodeInternal for none).
func codeOf(value string) Code {
	if c, ok := codes[value]; ok {
		return c
	}
	return CodeInternal
}

// Failure is a request that ends in an error response: the code, and the
// precise cause for the node's log and the audit entry (never sent to the
// requester: what is wrong with a token or a subject stays here).
type Failure struct {
	Code  Code
	Cause string
	// Extra, if set, is appended to the code's Detail in the response
	// (where the requester must learn what to fix: the schema problems).
	Extra string
}

func (f *Failure) Error() string { return f.Code.Value + ": " + f.Cause }

func fail(c Code, format string, args ...any) *Failure {
	return &Failure{Code: c, Cause: fmt.Sprintf(format, args...)}
}

// detail is what the response's Detail says.
func (f *Failure) detail() string {
	if f.Extra == "" {
		return f.Code.Detail + "."
	}
	return f.Code.Detail + ": " + f.Extra
}
