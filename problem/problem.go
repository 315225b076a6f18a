// Package problem writes HTTP errors as RFC 9457 problem details
// (application/problem+json), each with a stable type URI per kind of error.
package problem

import (
	"encoding/json"
	"net/http"
)

// Details is an RFC 9457 problem object.
type Details struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors lists, for invalid input, every field at fault.
	Errors any `json:"errors,omitempty"`
}

// Kind is one kind of error the node reports: its type URI, title and
// HTTP status live in one place.
type Kind struct {
	Slug   string
	Title  string
	Status int
}

// The kinds of error shared by every HTTP endpoint.
var (
	NotFound      = Kind{"not-found", "No such resource", http.StatusNotFound}
	UnknownClient = Kind{"unknown-client", "Client certificate not assigned to a tenant", http.StatusForbidden}
)

// TypeURI is the problem type URI of the kind.
func (k Kind) TypeURI() string { return "urn:parzelle:problem:" + k.Slug }

// Write sends a problem of the kind with a detail for this occurrence.
func Write(w http.ResponseWriter, r *http.Request, k Kind, detail string) {
	WriteErrors(w, r, k, detail, nil)
}

// WriteErrors is Write with the fields at fault (a JSON-encodable list),
// for invalid input.
func WriteErrors(w http.ResponseWriter, r *http.Request, k Kind, detail string, errors any) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(k.Status)
	_ = json.NewEncoder(w).Encode(Details{Type: k.TypeURI(), Title: k.Title, Status: k.Status, Detail: detail, Instance: r.URL.Path, Errors: errors})
}
