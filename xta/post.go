package xta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/xmlsafe"
)

// PostedMessage is a message the node itself sends from one of a tenant's
// identities: the answer to a message a consumer took over (an evidence
// request answered by XTA).
type PostedMessage struct {
	// MessageID is the message's id; AnswerID makes one from the message
	// answered, so that an answer posted twice is stored once.
	MessageID                                   string
	AuthorTenant, Author, Reader                string
	Service, BusinessScenario                   string
	MessageType, MessageTypeSchema, ContentType string
	Filename                                    string
	Content                                     []byte
}

// AnswerID is the MessageID of the node's answer to the message with id:
// the same for every attempt to answer it.
func (s *Server) AnswerID(id string) string {
	host := s.Identity
	if u, err := url.Parse(s.Identity); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	h := sha256.Sum256([]byte("parzelle/xta/answer/v1\x00" + id))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return "urn:de:xta:messageid:" + host + ":" + x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Post stores the message in tx (in no tenant; left in none) as
// sendMessage stores a client's: in the author's outbox with its transport
// report, and in the reader's message box when the reader is hosted here
// (delivered by a delivery job as usual), else waiting for forwarding. It
// reports false, storing nothing, when a message with the MessageID is
// there already (an answer posted before).
func (s *Server) Post(ctx context.Context, tx pgx.Tx, p PostedMessage) (bool, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM xta_message WHERE message_id = $1)`, p.MessageID).Scan(&exists); err != nil {
		return false, fmt.Errorf("xta: post: %w", err)
	}
	if exists {
		return false, nil
	}
	sp := &spool{budget: &budget{max: s.MaxContent}}
	if _, err := sp.Write(p.Content); err != nil {
		return false, err
	}
	defer sp.Close()
	out := &OutgoingMessage{MessageID: p.MessageID, Author: Party{ID: p.Author}, Reader: Party{ID: p.Reader}, Service: p.Service,
		BusinessScenario: p.BusinessScenario, MessageType: p.MessageType, MessageTypeSchema: p.MessageTypeSchema}
	// The metadata as sendMessage stores it: with its namespace
	// declarations, as the client's envelope gives them.
	wrapped, err := xmlsafe.Parse(strings.NewReader(`<w xmlns:oscimeta="`+NSOSCIMeta+`" xmlns:wsa="`+NSWSA+`">`+out.metadata()+`</w>`), xmlsafe.Options{})
	if err != nil {
		return false, fmt.Errorf("xta: post: metadata: %w", err)
	}
	var meta strings.Builder
	if err := wrapped.Children[0].Write(&meta, prefixes); err != nil {
		return false, fmt.Errorf("xta: post: metadata: %w", err)
	}
	now := s.now()
	m := &accepted{
		authorTenant: p.AuthorTenant,
		row: messageRow{messageID: p.MessageID, author: p.Author, reader: p.Reader, service: p.Service, businessScenario: p.BusinessScenario,
			messageType: p.MessageType, metadata: meta.String(), size: int64(len(p.Content)), sentAt: now},
		contents: []*Content{{ContentType: p.ContentType, Encoding: "UTF-8", Filename: p.Filename, data: sp}},
		small:    len(p.Content) <= chunkSize,
	}
	if owner := s.tenants().Owner(p.Reader); owner != nil {
		for _, id := range owner.Identities {
			if id.ID == p.Reader && slices.Contains(id.Transports, "xta") {
				m.readerTenant = owner.ID
			}
		}
	}
	m.consumed = m.readerTenant != "" && s.inbox != nil && s.inbox.Claims(m.readerTenant, p.Reader)
	if m.consumed {
		m.row.deliveredAt = &now
	}
	m.records = []record{{now, "info", RecordAccepted, "Nachricht vom Knoten erzeugt (Antwort)"}}
	if m.readerTenant == "" {
		m.records = append(m.records, record{now, "info", RecordForwarding, fmt.Sprintf("Leser %s wird nicht von diesem Knoten bedient; Weiterleitung über OSCI steht aus", p.Reader)})
	}
	if err := m.holdContents(); err != nil {
		return false, err
	}
	if err := s.storeIn(ctx, tx, []*accepted{m}); err != nil {
		return false, fmt.Errorf("xta: post: %w", err)
	}
	return true, nil
}
