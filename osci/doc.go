// Package osci will be OSCI-Transport 1.2: MIME packaging, order types and
// responses, dialog rules, detached multi-reference signatures, two-layer
// encryption, process cards and feedback codes, in client and intermediary
// roles.
//
// Nothing is built here yet.
package osci
