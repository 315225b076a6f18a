package jobs

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/parzelle/parzelle/mapping"
)

// Why a message became a dead letter: a fixed list of codes, free of
// personal data, so that dead letters can be counted and filtered by
// reason without opening their sealed texts.
const (
	CauseTenantGone    = "tenant-gone"
	CauseNotInbox      = "not-inbox"
	CauseNotWriter     = "not-writer"
	CauseNotXML        = "not-xml"
	CauseNoSchema      = "no-schema"
	CauseSchemaError   = "schema-error"
	CauseSchemaInvalid = "schema-invalid"
	CauseSignature     = "signature"
	CauseNoSpec        = "no-spec"
	CauseSpecBroken    = "spec-broken"
	CauseMapping       = "mapping"
	CauseApplyRefused  = "apply-refused"
	CauseApplyError    = "apply-error"
	// An OSCI delivery (StepForward, StepSend): refused by its passive
	// recipient or the reader's intermediary, or they stayed out of reach;
	// or the directory names no usable way to the reader.
	CauseNotAccepted = "not-accepted"
	CauseUnreachable = "unreachable"
	CauseNoRoute     = "no-route"
	// A collected OSCI delivery (StepCollect) that cannot be decrypted or
	// read; one whose author's signature fails is CauseSignature.
	CauseUnreadable = "unreadable"
)

// Causes are the codes in the order a message meets them.
var Causes = []string{CauseTenantGone, CauseNotInbox, CauseNotWriter, CauseNotXML, CauseNoSchema, CauseSchemaError,
	CauseSchemaInvalid, CauseSignature, CauseNoSpec, CauseSpecBroken, CauseMapping, CauseApplyRefused, CauseApplyError, CauseNotAccepted, CauseUnreachable, CauseNoRoute, CauseUnreadable}

// mappingFailure is the failure of a message the tenant's specs could not
// map; its problem names the line of the message it concerns, where known.
func mappingFailure(err error, content []byte) *failure {
	f := &failure{step: StepMap, cause: CauseMapping, reason: err.Error(), permanent: true}
	var me *mapping.Error
	switch {
	case errors.Is(err, mapping.ErrNoSpec):
		f.cause = CauseNoSpec
		f.problems = []string{fmt.Sprintf("line %d: no mapping spec of the tenant maps this root element", rootLine(content))}
	case errors.As(err, &me) && me.Line > 0:
		f.problems = []string{fmt.Sprintf("line %d: %s", me.Line, me.Msg)}
	}
	return f
}

// rootLine is the line of a document's root element: the first start tag
// that is no declaration, comment or processing instruction.
func rootLine(doc []byte) int {
	for i := 0; i < len(doc)-1; i++ {
		if doc[i] == '<' && doc[i+1] != '?' && doc[i+1] != '!' {
			return 1 + bytes.Count(doc[:i], []byte("\n"))
		}
	}
	return 1
}
