// Package osci will be OSCI-Transport 1.2: MIME packaging, order types and
// responses, dialog rules, detached multi-reference signatures, two-layer
// encryption, process cards and feedback codes, in client and intermediary
// roles.
//
// Built so far: the MIME reader (ParseMIME, ReadMIME for a message held
// whole, ScanMIME for one streamed past with only its envelope held), the
// request parser (ParseRequest: transport decryption, order and dialog
// control, certificates, the client signature and what it covers), the
// dialog rules with their state in PostgreSQL (Dialogs), signed responses
// (Response), the feedback codes with their texts (Code), and the
// intermediary role on POST /osci (Intermediary): postboxes of the
// tenants' OSCI identities in package msgbox, addressed by cipher
// certificate, with process cards, deliveries into register inboxes, and
// partial deliveries (partialStoreDelivery, partialFetchDelivery: a large
// message in chunks, reassembled as a stream), and passive recipients
// (Recipients: forwardDelivery and deliveries to their postboxes pushed as
// acceptDelivery by River jobs; mediateDelivery passed on at once as
// processDelivery). The client role: Client (dialogs with any
// intermediary, every answer checked), SealContent and OpenContent, and
// Sender, which forwards XTA messages to readers behind other
// intermediaries and polls their process cards into the author's report,
// and Collector, which collects the tenants' postboxes at other
// intermediaries.
//
// An OSCI message is the HTTP body itself: its MIME headers are the first lines, followed by a
// Multipart/Related body whose root part is the SOAP 1.1 envelope and whose
// other parts (attachments, the transport-encrypted message) are named by
// Content-ID and resolved from "cid:" URIs. The encryption layers are
// decrypted with package xmlenc.
package osci
