// Package xnachweis will be the XNachweis 1.2.0 data-provider side: parse
// and validate evidence requests, verify the IssuedToken, match the subject,
// and build signed evidence and (error) responses.
//
// Nothing is built here yet.
package xnachweis
