package xta

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
)

// outboxMessage is the author's view of a sent message.
type outboxMessage struct {
	id                            int64
	metadata                      string
	status                        int
	sent                          time.Time
	notBefore, delivered, fetched *time.Time
	closed, cancelled             *time.Time
	peerTenant                    *string
	peerID                        *int64
}

func loadOutbox(ctx context.Context, tx pgx.Tx, account, messageID string, lock bool) (*outboxMessage, error) {
	q := `SELECT id, metadata, status, sent_at, not_before, delivered_at, fetched_at, closed_at, cancelled_at, peer_tenant, peer_id
		FROM xta_message WHERE box = 'outbox' AND account = $1 AND message_id = $2`
	if lock {
		q += ` FOR UPDATE`
	}
	m := &outboxMessage{}
	err := tx.QueryRow(ctx, q, account, messageID).Scan(&m.id, &m.metadata, &m.status, &m.sent, &m.notBefore, &m.delivered, &m.fetched, &m.closed, &m.cancelled, &m.peerTenant, &m.peerID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, xtaFault(CodeUnknownMessageID, "the account %s sent no message %q", account, messageID)
	}
	if err != nil {
		return nil, fmt.Errorf("xta: load message: %w", err)
	}
	return m, nil
}

func (s *Server) getTransportReport(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	messageID := c.req.Body.TrimmedText()
	var body string
	err := db.InTenant(ctx, s.pool, owner.ID, func(tx pgx.Tx) error {
		m, err := loadOutbox(ctx, tx, c.account, messageID, false)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT at, level, code, reason FROM xta_report_record WHERE message = $1 ORDER BY id`, m.id)
		if err != nil {
			return fmt.Errorf("xta: load report: %w", err)
		}
		records, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (record, error) {
			var rec record
			err := r.Scan(&rec.at, &rec.level, &rec.code, &rec.reason)
			return rec, err
		})
		if err != nil {
			return fmt.Errorf("xta: load report: %w", err)
		}
		meta, err := metadataWithTimes(m.metadata, deliveryTimes{initialSend: &m.sent, delivery: m.delivered, initialFetch: m.fetched, reception: m.closed})
		if err != nil {
			return err
		}
		body = transportReport(meta, s.now(), s.Identity, m.status, records)
		return nil
	})
	if err != nil {
		return err
	}
	c.reply("", body)
	return nil
}

// transportReport renders an xta:TransportReport.
func transportReport(meta string, now time.Time, identity string, status int, records []record) string {
	var b strings.Builder
	b.WriteString(`<xta:TransportReport>` + meta + `<xta:ReportTime>` + xsTime(now) + `</xta:ReportTime><xta:XTAServerIdentity>` + esc(identity) +
		`</xta:XTAServerIdentity><xta:MessageStatus><xta:Status>` + itoa(int64(status)) + `</xta:Status>`)
	for _, l := range []struct{ level, list, item string }{{"error", "ErrorList", "Error"}, {"warning", "WarnList", "Warning"}, {"info", "InfoList", "Info"}} {
		opened := false
		for _, r := range records {
			if r.level != l.level {
				continue
			}
			if !opened {
				b.WriteString(`<xta:` + l.list + `>`)
				opened = true
			}
			fmt.Fprintf(&b, `<xta:%s><xta:Timestamp>%s</xta:Timestamp><xta:Code listURI="%s" listVersionID="%s"><code>%s</code></xta:Code><xta:Reason>%s</xta:Reason></xta:%s>`,
				l.item, xsTime(r.at), recordListURI, recordListVersion, esc(r.code), esc(r.reason), l.item)
		}
		if opened {
			b.WriteString(`</xta:` + l.list + `>`)
		}
	}
	b.WriteString(`</xta:MessageStatus></xta:TransportReport>`)
	return b.String()
}

// cancelMessage withdraws a message whose NotBefore has not come yet.
func (s *Server) cancelMessage(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	messageID := c.req.Body.TrimmedText()
	err := db.InTenant(ctx, s.pool, owner.ID, func(tx pgx.Tx) error {
		m, err := loadOutbox(ctx, tx, c.account, messageID, true)
		if err != nil {
			return err
		}
		now := s.now()
		switch {
		case m.cancelled != nil:
			return nil
		case m.notBefore == nil:
			return xtaFault(CodeNotBeforeNotSet, "the message %q was sent without NotBefore and is delivered at once", messageID)
		case !m.notBefore.After(now) || m.delivered != nil:
			return xtaFault(CodeNotBeforePassed, "NotBefore %s of message %q has passed", xsTime(*m.notBefore), messageID)
		}
		if _, err := tx.Exec(ctx, `UPDATE xta_message SET cancelled_at = $2, status = $3 WHERE id = $1`, m.id, now, StatusRed); err != nil {
			return fmt.Errorf("xta: cancel: %w", err)
		}
		if err := addRecords(ctx, tx, owner.ID, m.id, record{now, "error", RecordCancelled, "Transportauftrag vom Absender zurückgezogen (cancelMessage)"}); err != nil {
			return err
		}
		if m.peerTenant != nil && m.peerID != nil {
			if err := db.EnterTenant(ctx, tx, *m.peerTenant); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE xta_message SET cancelled_at = $2 WHERE id = $1 AND delivered_at IS NULL`, *m.peerID, now); err != nil {
				return fmt.Errorf("xta: cancel: %w", err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM xta_part WHERE message = $1`, *m.peerID); err != nil {
				return fmt.Errorf("xta: cancel: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.reply("", "")
	return nil
}
