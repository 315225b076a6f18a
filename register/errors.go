package register

import (
	"errors"
	"fmt"
)

// ErrorKind classifies what went wrong with a register operation, so that
// the API can answer in HTTP terms.
type ErrorKind int

// The kinds of register errors.
const (
	// KindDenied: the actor may not do this (or it is another tenant).
	KindDenied ErrorKind = iota + 1
	// KindNotFound: no such register or record, or none at that time.
	KindNotFound
	// KindGone: the record was deleted.
	KindGone
	// KindInvalid: the input is not what the register type declares.
	KindInvalid
	// KindConflict: the subject exists already, or an idempotency key was
	// used for another request.
	KindConflict
	// KindStale: the record changed since the revision the caller named.
	KindStale
	// KindAmbiguous: a fact's identity fits several records (or
	// contradicts itself), and nothing tells which person it is about.
	KindAmbiguous
	// KindBlocked: the record carries an Auskunftssperre and the caller
	// may not learn of it.
	KindBlocked
)

// Error is a register operation's refusal, with a detail a clerk or
// integrator understands and, for invalid input, every field at fault.
type Error struct {
	Kind   ErrorKind
	Detail string
	Fields []FieldError
	// MergedInto is, for a record that was merged, the record it is now.
	MergedInto string

	cause error
}

// Unwrap returns what caused the refusal, if anything but the register.
func (e *Error) Unwrap() error { return e.cause }

func (e *Error) Error() string {
	if len(e.Fields) > 0 {
		return fmt.Sprintf("register: %s (%s: %s)", e.Detail, e.Fields[0].Attribute, e.Fields[0].Detail)
	}
	return "register: " + e.Detail
}

func refuse(k ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: k, Detail: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of a register error, 0 for other errors.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}
