// Package xnachweis is the XNachweis 1.2.0 data provider: it answers NOOTS
// evidence requests (DE.EvidenceRequest.0101, and .0301 for EU requests)
// from a tenant's register with signed evidence, or with an error response
// saying why not.
//
// One code path, Service.Answer, serves both ways a request arrives: the
// synchronous HTTPS endpoint (Handler, at Path) and an XTA message to the
// tenant's evidence identity (XTAInbox and RequestWorker, which answer with
// an XTA message back to the author). A request is parsed hardened and
// validated against the official schemas; its tenant, requester, evidence
// type, IssuedToken (TokenVerifier; JWSTokens is the format this node
// ships) and quotas are checked; the register finds the subject by IDNr or
// Basisdaten (register.Store.Evidence), which audits the request and logs
// IDNr use; the evidence document (document.go) is signed with the
// tenant's key inside that transaction. Every refusal is a Code of the one
// table in errors.go.
//
// BuildRequest, SealedRequest, Post and Exchange.Check are the requester's
// side, for `parzelle xnachweis request`, tests and benchmarks.
package xnachweis
