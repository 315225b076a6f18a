package osci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xmlschema"
)

// Partial deliveries (OSCI 2017): a client too large for one request
// serialises its whole storeDelivery, cuts the bytes into chunks of
// ChunkSize KiB and sends each as a partialStoreDelivery with the
// delivery's MessageId and "_Partial"; the intermediary keeps the chunks
// sealed until the last one arrives, then carries out the storeDelivery
// the chunks make up, read from them as a stream (its attachments are
// never whole in memory), and answers the last chunk with the delivery's
// feedback (InsideFeedback) and process card. partialFetchDelivery is
// the way back: the responseToFetchDelivery is cut into chunks the
// addressee asks for one by one.

// Bounds of partial deliveries, in KiB as ChunkInformation counts.
const (
	// MinChunkKB and MaxChunkKB bound a chunk.
	MinChunkKB = 1
	MaxChunkKB = 16 << 10
	// maxChunks bounds the chunks of one message.
	maxChunks = 1 << 16
	// maxStreamedEnvelope bounds the SOAP envelope of a reassembled
	// message, which is held in memory (large content travels in
	// attachments).
	maxStreamedEnvelope = 16 << 20
	// DefaultMaxPartialKB bounds a reassembled message (1 GiB).
	DefaultMaxPartialKB = 1 << 20
	// partialSuffix ends the MessageId of a partial order.
	partialSuffix = "_Partial"
)

// ChunkInformation is a partial order's or response's ChunkInformation:
// sizes in KiB, numbers from 1.
type ChunkInformation struct {
	Number, SizeKB, Total int
	MessageKB             int64
	// Received are the chunks the intermediary holds (responses to
	// partialStoreDelivery).
	Received []int
}

// readChunkInformation reads the ChunkInformation of a partial order (nil
// for InfoOnly).
func readChunkInformation(order *xmlsafe.Element) (*ChunkInformation, error) {
	el := order.Child(Namespace2017, "ChunkInformation")
	if el == nil {
		if order.Child(Namespace2017, "InfoOnly") != nil {
			return nil, nil
		}
		return nil, refuse(CodeChunkInformation, "the %s has no ChunkInformation", order.Name.Local)
	}
	var ci ChunkInformation
	for _, a := range []struct {
		name     string
		required bool
		into     func(int64)
	}{
		{"ChunkNumber", true, func(v int64) { ci.Number = int(v) }},
		{"ChunkSize", true, func(v int64) { ci.SizeKB = int(v) }},
		{"TotalChunkNumbers", order.Name.Local == string(OrderPartialStoreDelivery), func(v int64) { ci.Total = int(v) }},
		{"TotalMessageSize", order.Name.Local == string(OrderPartialStoreDelivery), func(v int64) { ci.MessageKB = v }},
	} {
		s, ok := el.Attribute(a.name)
		if !ok {
			if a.required {
				return nil, refuse(CodeChunkInformation, "the ChunkInformation has no %s", a.name)
			}
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || v < 0 || v > 1<<40 {
			return nil, refuse(CodeChunkInformation, "the ChunkInformation's %s %q is no count", a.name, s)
		}
		a.into(v)
	}
	switch {
	case ci.SizeKB < MinChunkKB:
		return nil, refuse(CodeChunkTooSmall, "ChunkSize %d KiB is below this intermediary's minimum of %d KiB", ci.SizeKB, MinChunkKB)
	case ci.SizeKB > MaxChunkKB:
		return nil, refuse(CodeChunkTooLarge, "ChunkSize %d KiB is above this intermediary's maximum of %d KiB", ci.SizeKB, MaxChunkKB)
	case ci.Number < 1 || ci.Total != 0 && ci.Number > ci.Total:
		return nil, refuse(CodeChunkNumber, "chunk %d of %d", ci.Number, ci.Total)
	case ci.Total > maxChunks:
		return nil, refuse(CodeMessageTooLarge, "%d chunks are more than the %d this intermediary takes for one message", ci.Total, maxChunks)
	}
	return &ci, nil
}

// echoChunk is the ChunkInformation of a refused partial order's
// response: the request's numbers, as far as they are numbers.
func echoChunk(order *xmlsafe.Element) *ChunkInformation {
	ci := &ChunkInformation{}
	if el := order.Child(Namespace2017, "ChunkInformation"); el != nil {
		number := func(name string) int {
			v, _ := el.Attribute(name)
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return max(n, 0)
		}
		ci.Number, ci.Total = number("ChunkNumber"), number("TotalChunkNumbers")
	}
	return ci
}

// chunkAAD binds a sealed chunk to its tenant, message and place.
func chunkAAD(tenant, messageID string, no int) []byte {
	return []byte("parzelle/osci/chunk/v1\x00" + tenant + "\x00" + messageID + "\x00" + strconv.Itoa(no))
}

// partialMessageID reads a partial order's MessageId: the delivery's, with
// "_Partial" appended by the client (accepted without).
func partialMessageID(order *xmlsafe.Element) (string, error) {
	id, err := messageIDOf(order)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", refuse(CodeNoMessageID, "the %s names no MessageId: ask for one with getMessageId", order.Name.Local)
	}
	return strings.TrimSuffix(id, partialSuffix), nil
}

// storeChunk keeps one chunk of a partial delivery and, with the last,
// carries out the storeDelivery the chunks make up.
func (in *Intermediary) storeChunk(ctx context.Context, x *exchange) ([]Code, error) {
	req := x.req
	id, err := partialMessageID(req.OrderElement)
	if err != nil {
		return nil, err
	}
	ci, err := readChunkInformation(req.OrderElement)
	if err != nil {
		return nil, err
	}
	var blob []byte
	if ci != nil && ci.Total < 1 {
		return nil, refuse(CodeChunkInformation, "a partialStoreDelivery names TotalChunkNumbers")
	}
	if ci != nil {
		if blob, err = chunkBlob(req); err != nil {
			return nil, err
		}
		limit := int64(ci.SizeKB) << 10
		switch last := ci.Number == ci.Total; {
		case int64(len(blob)) > limit:
			return nil, refuse(CodeChunkTooLarge, "chunk %d has %d bytes, more than its ChunkSize of %d KiB", ci.Number, len(blob), ci.SizeKB)
		case !last && int64(len(blob)) != limit:
			return nil, refuse(CodeChunkTooSmall, "chunk %d has %d bytes; every chunk but the last has ChunkSize (%d KiB)", ci.Number, len(blob), ci.SizeKB)
		case len(blob) == 0:
			return nil, refuse(CodeChunkTooSmall, "chunk %d is empty", ci.Number)
		case ci.MessageKB > in.maxPartialKB():
			return nil, refuse(CodeMessageTooLarge, "the message has %d KiB, more than the %d KiB this intermediary takes", ci.MessageKB, in.maxPartialKB())
		case int64(ci.Total)*int64(ci.SizeKB) < ci.MessageKB:
			return nil, refuse(CodeChunkInformation, "%d chunks of %d KiB cannot hold %d KiB", ci.Total, ci.SizeKB, ci.MessageKB)
		}
	}
	signer := authorOf(req.Signer())
	key, err := in.Keyring.Current(ctx, in.Pool, x.tenant.ID)
	if err != nil {
		return nil, fmt.Errorf("osci: data key: %w", err)
	}
	var received []int
	state := ChunkInformation{}
	err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
		var issued bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM osci_message_id WHERE tenant_id = $1 AND message_id = $2 AND stored_as IS NULL)`, x.tenant.ID, id).Scan(&issued); err != nil {
			return fmt.Errorf("osci: look up MessageId: %w", err)
		}
		if !issued {
			return refuse(CodeIllegalMessageID, "the MessageId %q was not handed out by this intermediary, or was used already", id)
		}
		rows, _ := tx.Query(ctx, `SELECT chunk_no, total, chunk_kb, message_kb, signer FROM osci_chunk WHERE tenant_id = $1 AND message_id = $2 ORDER BY chunk_no`, x.tenant.ID, id)
		var no, total, kb int
		var messageKB int64
		var by string
		_, err := pgx.ForEachRow(rows, []any{&no, &total, &kb, &messageKB, &by}, func() error {
			switch {
			case by != signer:
				return refuse(CodeIllegalMessageID, "the chunks of %q came from another client", id)
			case ci != nil && (total != ci.Total || kb != ci.SizeKB || messageKB != ci.MessageKB):
				return refuse(CodeChunkInformation, "chunk %d says %d chunks of %d KiB, %d KiB in all; the chunks before said %d of %d KiB, %d KiB", ci.Number, ci.Total, ci.SizeKB, ci.MessageKB, total, kb, messageKB)
			case ci != nil && no == ci.Number:
				return refuse(CodeChunkExists, "chunk %d of %q is here already", no, id)
			}
			received = append(received, no)
			state.Total, state.SizeKB, state.MessageKB = total, kb, messageKB
			return nil
		})
		if err != nil || ci == nil {
			return err
		}
		sealed, err := key.Seal(chunkAAD(x.tenant.ID, id, ci.Number), blob)
		if err != nil {
			return fmt.Errorf("osci: seal chunk: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO osci_chunk (tenant_id, message_id, chunk_no, total, chunk_kb, message_kb, signer, key_version, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, x.tenant.ID, id, ci.Number, ci.Total, ci.SizeKB, ci.MessageKB, signer, key.Version, sealed); db.IsUniqueViolation(err) {
			return refuse(CodeChunkExists, "chunk %d of %q arrived twice at once", ci.Number, id)
		} else if err != nil {
			return fmt.Errorf("osci: keep chunk: %w", err)
		}
		received = append(received, ci.Number)
		state = *ci
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(received)
	state.Received = received
	x.resp.Chunk = &state
	if ci == nil || len(received) < ci.Total {
		return nil, nil
	}
	// The last chunk: carry out the storeDelivery, which answers inside.
	inside, err := in.storeAssembled(ctx, x, id, ci)
	var oe *Error
	switch {
	case errors.As(err, &oe):
		in.Log.Warn("osci partial delivery refused", "tenant", x.tenant.ID, "message_id", id, "code", string(oe.Code), "detail", oe.Detail, "cause", oe.Err)
		x.resp.InsideFeedback = []Code{oe.Code}
	case err != nil:
		return nil, err
	default:
		x.resp.InsideFeedback = append([]Code{CodeDoneDialogOpen}, inside...)
	}
	// Refused or stored, the chunks have done their work.
	err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM osci_chunk WHERE tenant_id = $1 AND message_id = $2`, x.tenant.ID, id)
		return err
	})
	if err != nil {
		in.Log.Warn("osci: drop the chunks of a partial delivery", "tenant", x.tenant.ID, "message_id", id, "error", err)
	}
	return nil, nil
}

// chunkBlob is the chunk a partialStoreDelivery carries: the attachment
// its one content names.
func chunkBlob(req *Request) ([]byte, error) {
	pkg := req.Body.Child(Namespace, "ContentPackage")
	var content *xmlsafe.Element
	if pkg != nil {
		if cc := pkg.Child(Namespace, "ContentContainer"); cc != nil && len(pkg.Children) == 1 {
			content = cc.Child(Namespace, "Content")
		}
	}
	if content == nil {
		return nil, refuse(CodeNoValidRequest, "a partialStoreDelivery carries its chunk in one ContentContainer's Content")
	}
	href, _ := content.Attribute("href")
	if href == "" {
		return nil, refuse(CodeNoValidRequest, "the chunk's Content names no attachment (href=\"cid:…\")")
	}
	data, err := req.MIME.Resolve(href)
	if err != nil {
		return nil, refuse(CodeNoValidRequest, "the chunk: %v", err)
	}
	return data, nil
}

func (in *Intermediary) maxPartialKB() int64 {
	if in.MaxPartialKB > 0 {
		return in.MaxPartialKB
	}
	return DefaultMaxPartialKB
}

// storeAssembled carries out the storeDelivery the chunks of id make up,
// read from them as a stream, and returns its warnings; its process card
// goes into the response.
func (in *Intermediary) storeAssembled(ctx context.Context, x *exchange, id string, ci *ChunkInformation) ([]Code, error) {
	open := func() (io.Reader, error) {
		return &chunkReader{ctx: ctx, in: in, tenant: x.tenant.ID, messageID: id, total: ci.Total}, nil
	}
	msg, err := ScanMIME(open, maxStreamedEnvelope)
	var oe *Error
	switch {
	case errors.As(err, &oe):
		return nil, err
	case err != nil:
		var ce *chunkError
		if errors.As(err, &ce) {
			return nil, ce.err
		}
		return nil, refuse(CodeNoOSCIMessage, "the chunks make up no MIME message: %v", err)
	}
	env, err := envelopeOf(msg)
	if err != nil {
		return nil, err
	}
	if b := env.Root.Child(SOAPNamespace, "Body"); b.Child(Namespace, "ContentPackage") == nil && len(b.Children) == 1 && b.Children[0].Name.Local == "EncryptedData" {
		return nil, refuse(CodeNoValidRequest, "the chunks make up a transport-encrypted message; a partial delivery carries the storeDelivery as signed (the transport layer encrypts each chunk)")
	}
	inner, err := parseOrder(msg, env, Options{})
	if err != nil {
		return nil, err
	}
	size := int64(0)
	for _, p := range msg.Parts {
		size += p.Size + int64(len(p.Body))
	}
	switch {
	case inner.Order != OrderStoreDelivery:
		return nil, refuse(CodeNoValidRequest, "the chunks make up a %s, not a storeDelivery", inner.Order)
	case inner.Signature == nil:
		return nil, refuse(CodeUnsigned, "the storeDelivery the chunks make up is not signed")
	case !bytes.Equal(inner.Signer().Raw, x.req.Signer().Raw):
		return nil, refuse(CodeSignatureInvalid, "the storeDelivery the chunks make up is signed by %q, its chunks by %q", inner.Signer().Subject, x.req.Signer().Subject)
	}
	if in.Schemas != nil && in.Schemas.Has(xmlschema.OSCI12(OrderStoreDelivery.schemaName())) {
		if err := in.Schemas.Validate(xmlschema.OSCI12(OrderStoreDelivery.schemaName()), msg.Root().Body); err != nil {
			return nil, refuse(CodeNoValidRequest, "the storeDelivery the chunks make up does not match the OSCI 1.2 schema: %v", err)
		}
	}
	// store reads the delivery (and refuses one without MessageId); here
	// only whether it is the one the chunks were sent for.
	if mid, err := messageIDOf(inner.OrderElement); err != nil {
		return nil, err
	} else if mid != "" && mid != id {
		return nil, refuse(CodeIllegalMessageID, "the chunks of %q make up the delivery %q", id, mid)
	}
	y := &exchange{tenant: x.tenant, req: inner, dialog: x.dialog, set: x.set, started: x.started, resp: &Response{Order: OrderStoreDelivery}}
	warnings, err := in.store(ctx, y)
	if err != nil {
		return nil, err
	}
	x.resp.ProcessCards = y.resp.ProcessCards
	in.Log.Info("osci partial delivery stored", "tenant", x.tenant.ID, "message_id", id, "chunks", ci.Total, "bytes", size)
	return warnings, nil
}

// chunkReader reads a partial delivery's chunks in order, one row at a
// time, opened with the tenant's data key.
type chunkReader struct {
	ctx       context.Context
	in        *Intermediary
	tenant    string
	messageID string
	total     int
	next      int
	cur       []byte
}

// chunkError is a chunk that could not be read: the cause is not the
// client's.
type chunkError struct{ err error }

func (e *chunkError) Error() string { return e.err.Error() }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.next >= r.total {
			return 0, io.EOF
		}
		r.next++
		err := db.InTenant(r.ctx, r.in.Pool, r.tenant, func(tx pgx.Tx) error {
			var version int
			var sealed []byte
			if err := tx.QueryRow(r.ctx, `SELECT key_version, data FROM osci_chunk WHERE tenant_id = $1 AND message_id = $2 AND chunk_no = $3`,
				r.tenant, r.messageID, r.next).Scan(&version, &sealed); err != nil {
				return err
			}
			var err error
			r.cur, err = r.in.Keyring.Open(r.ctx, tx, r.tenant, version, chunkAAD(r.tenant, r.messageID, r.next), sealed)
			return err
		})
		if err != nil {
			return 0, &chunkError{fmt.Errorf("osci: chunk %d of %s: %w", r.next, r.messageID, err)}
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Tables are the intermediary's sealed tables, for key rotation.
func Tables() []sealing.Table {
	return []sealing.Table{
		{Name: "OSCI chunks", SQL: "osci_chunk", Reseal: sealing.Rows[chunkRow]{
			Select: `SELECT message_id, chunk_no, key_version, data FROM osci_chunk
				WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`,
			Divide: 10, // chunks are up to 16 MiB each: fewer to a batch
			Fields: func(tenant string, c chunkRow) (int, []sealing.Field) {
				return c.Key, []sealing.Field{{AAD: chunkAAD(tenant, c.MessageID, c.No), Sealed: c.Data}}
			},
			Update: func(b *pgx.Batch, tenant string, c chunkRow, version int, sealed [][]byte) {
				b.Queue(`UPDATE osci_chunk SET key_version = $4, data = $5 WHERE tenant_id = $1 AND message_id = $2 AND chunk_no = $3`, tenant, c.MessageID, c.No, version, sealed[0])
			},
			Name: func(c chunkRow) string { return fmt.Sprintf("chunk %d of %s", c.No, c.MessageID) },
		}.Reseal},
		{Name: "OSCI responses in chunks", SQL: "osci_fetch_assembly", Reseal: sealing.Rows[assemblyRow]{
			Select: `SELECT conversation_id, key_version, envelope FROM osci_fetch_assembly
				WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`,
			Fields: func(tenant string, a assemblyRow) (int, []sealing.Field) {
				return a.Key, []sealing.Field{{AAD: assemblyAAD(tenant, a.Conversation), Sealed: a.Envelope}}
			},
			Update: func(b *pgx.Batch, tenant string, a assemblyRow, version int, sealed [][]byte) {
				b.Queue(`UPDATE osci_fetch_assembly SET key_version = $3, envelope = $4 WHERE tenant_id = $1 AND conversation_id = $2`, tenant, a.Conversation, version, sealed[0])
			},
			Name: func(a assemblyRow) string { return "response in chunks of dialog " + a.Conversation },
		}.Reseal},
	}
}

// chunkRow and assemblyRow are sealed rows as key rotation reads them.
type chunkRow struct {
	MessageID string
	No, Key   int
	Data      []byte
}

type assemblyRow struct {
	Conversation string
	Key          int
	Envelope     []byte
}

// assembly is a response handed out in chunks: the responseToFetchDelivery
// as it was built for the first chunk (boundary, signed envelope) and its
// attachments, which are streamed from the message box again for each
// chunk.
type assembly struct {
	MessageID   string       `json:"messageId"`
	Boundary    string       `json:"boundary"`
	Envelope    []byte       `json:"envelope"`
	Attachments []Attachment `json:"attachments"`
	Size        int64        `json:"size"`
}

// assemblyAAD binds a sealed assembly to its tenant and dialog.
func assemblyAAD(tenant, conversation string) []byte {
	return []byte("parzelle/osci/fetch-assembly/v1\x00" + tenant + "\x00" + conversation)
}

// fetchChunk answers partialFetchDelivery: chunk 1 selects the delivery
// like fetchDelivery and builds its response; a response no larger than
// a chunk goes back whole (a responseToFetchDelivery), a larger one is
// kept and cut into the chunks the addressee asks for. The delivery counts
// as received with the request after its last chunk.
func (in *Intermediary) fetchChunk(ctx context.Context, x *exchange) ([]Code, error) {
	box, err := in.postbox(x, CodeNoDelivery)
	if err != nil {
		return nil, err
	}
	ci, err := readChunkInformation(x.req.OrderElement)
	if err != nil {
		return nil, err
	}
	if ci == nil {
		return nil, refuse(CodeChunkInformation, "a partialFetchDelivery names the chunk it wants")
	}
	sel, err := in.selection(x)
	if err != nil {
		return nil, err
	}
	conversation := x.dialog.Control.ConversationID
	var asm assembly
	if ci.Number == 1 {
		whole, err := in.assemble(ctx, x, box, sel, ci, &asm)
		if err != nil || whole {
			return nil, err
		}
	} else if err := in.loadAssembly(ctx, x.tenant.ID, conversation, ci, &asm); err != nil {
		return nil, err
	}
	size := int64(ci.SizeKB) << 10
	total := int((asm.Size + size - 1) / size)
	if ci.Number > total {
		return nil, refuse(CodeChunkNumber, "the delivery's response has %d chunks of %d KiB, there is no chunk %d", total, ci.SizeKB, ci.Number)
	}
	var blob bytes.Buffer
	blob.Grow(int(min(size, asm.Size)))
	err = in.Box.Fetch(ctx, box.Tenant.ID, box.Identity.ID, msgbox.Selector{IDs: []string{asm.MessageID}}, 0, nil, func(f msgbox.Fetched) error {
		atts := slices.Clone(asm.Attachments)
		for i := range atts {
			atts[i].Write = func(w io.Writer) error { return f.Content(i+1, w) }
		}
		w := &window{w: &blob, skip: int64(ci.Number-1) * size, left: size}
		if err := writeMIME(w, asm.Boundary, asm.Envelope, atts); err != nil && err != errWindowFull {
			return err
		}
		return nil
	})
	var be *msgbox.Error
	switch {
	case errors.As(err, &be) && be.Kind == msgbox.KindNoMessage:
		return nil, refuse(CodeNoDelivery, "the delivery %q is no longer in the postbox", asm.MessageID)
	case err != nil:
		return nil, fmt.Errorf("osci: chunk %d of %s: %w", ci.Number, asm.MessageID, err)
	}
	x.resp.ChunkBlob, x.resp.ChunkMessageID = blob.Bytes(), asm.MessageID
	x.resp.Chunk = &ChunkInformation{Number: ci.Number, Total: total, MessageKB: (asm.Size + 1023) / 1024}
	if ci.Number == total {
		err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
			return in.Dialogs.Fetched(ctx, tx, x.tenant.ID, conversation, asm.MessageID)
		})
	}
	return nil, err
}

// assemble selects the delivery for chunk 1 and builds its
// responseToFetchDelivery. One that fits a chunk becomes the response
// (whole is true); a larger one is kept in asm and osci_fetch_assembly.
func (in *Intermediary) assemble(ctx context.Context, x *exchange, box tenant.Postbox, sel msgbox.Selector, ci *ChunkInformation, asm *assembly) (whole bool, err error) {
	full := &Response{Order: OrderFetchDelivery, Control: x.resp.Control, Language: x.resp.Language, Selection: x.resp.Selection,
		Feedback: []Code{CodeDoneDialogOpen}, Certificate: x.signing.Certificate()}
	d, card, pending, err := in.fetchOne(ctx, box, sel, nil, false)
	if err != nil {
		return false, err
	}
	full.Delivery, full.ProcessCards = d, []ProcessCard{card}
	if pending > 0 {
		full.Feedback = append(full.Feedback, CodeMoreDeliveries)
	}
	envelope, err := full.envelope(x.signer())
	if err != nil {
		return false, err
	}
	*asm = assembly{MessageID: full.Delivery.MessageID, Boundary: newBoundary(), Envelope: envelope, Attachments: full.Delivery.Attachments}
	var n counter
	if err := writeMIME(&n, asm.Boundary, asm.Envelope, asm.Attachments); err != nil {
		return false, err
	}
	asm.Size = int64(n)
	conversation := x.dialog.Control.ConversationID
	if asm.Size <= int64(ci.SizeKB)<<10 {
		// Small enough for one chunk: the whole response, as fetchDelivery
		// answers it (which the client's library reads as such).
		x.resp.Order = OrderFetchDelivery
		x.resp.Selection = full.Selection
		_, err := in.fetch(ctx, x)
		return true, err
	}
	plain, _ := json.Marshal(asm)
	key, err := in.Keyring.Current(ctx, in.Pool, x.tenant.ID)
	if err != nil {
		return false, fmt.Errorf("osci: data key: %w", err)
	}
	sealed, err := key.Seal(assemblyAAD(x.tenant.ID, conversation), plain)
	if err != nil {
		return false, err
	}
	err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
		_, err = tx.Exec(ctx, `INSERT INTO osci_fetch_assembly (tenant_id, conversation_id, message_id, chunk_kb, key_version, envelope) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET message_id = $3, chunk_kb = $4, key_version = $5, envelope = $6, created_at = now()`,
			x.tenant.ID, conversation, asm.MessageID, ci.SizeKB, key.Version, sealed)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("osci: keep the response to fetch in chunks: %w", err)
	}
	return false, nil
}

// loadAssembly reads the response the dialog hands out in chunks.
func (in *Intermediary) loadAssembly(ctx context.Context, tenantID, conversation string, ci *ChunkInformation, asm *assembly) error {
	return db.InTenant(ctx, in.Pool, tenantID, func(tx pgx.Tx) error {
		var kb, version int
		var sealed []byte
		err := tx.QueryRow(ctx, `SELECT chunk_kb, key_version, envelope FROM osci_fetch_assembly WHERE tenant_id = $1 AND conversation_id = $2`, tenantID, conversation).Scan(&kb, &version, &sealed)
		if errors.Is(err, pgx.ErrNoRows) {
			return refuse(CodeChunkNumber, "chunk %d asked for before chunk 1: this dialog hands out no delivery in chunks", ci.Number)
		}
		if err != nil {
			return fmt.Errorf("osci: load the response in chunks: %w", err)
		}
		if kb != ci.SizeKB {
			return refuse(CodeChunkInformation, "the chunks of this delivery have %d KiB, not %d", kb, ci.SizeKB)
		}
		plain, err := in.Keyring.Open(ctx, tx, tenantID, version, assemblyAAD(tenantID, conversation), sealed)
		if err != nil {
			return fmt.Errorf("osci: open the response in chunks: %w", err)
		}
		return json.Unmarshal(plain, asm)
	})
}

// window is the writer a chunk is cut with: it passes on the bytes after
// skip, up to left of them, and then stops the writing with
// errWindowFull.
type window struct {
	w          io.Writer
	skip, left int64
}

var errWindowFull = errors.New("osci: the chunk is complete")

// Skip takes n bytes unseen when they all lie before the chunk.
func (c *window) Skip(n int64) bool {
	if n > c.skip {
		return false
	}
	c.skip -= n
	return true
}

func (c *window) Write(p []byte) (int, error) {
	n := len(p)
	if c.skip >= int64(len(p)) {
		c.skip -= int64(len(p))
		return n, nil
	}
	p, c.skip = p[c.skip:], 0
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	if _, err := c.w.Write(p); err != nil {
		return 0, err
	}
	if c.left -= int64(len(p)); c.left == 0 {
		return n, errWindowFull
	}
	return n, nil
}

// counter counts a message's bytes, its attachments by their sizes.
type counter int64

func (c *counter) Skip(n int64) bool { *c += counter(n); return true }

func (c *counter) Write(p []byte) (int, error) { *c += counter(len(p)); return len(p), nil }
