package msgbox

import (
	"context"
	"fmt"
	"time"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/sealing"
)

// The rows that store writes, gathered per tenant as column arrays: each
// table's rows of a tenant are inserted with one INSERT … SELECT FROM
// unnest(…), however many messages they belong to.

// rowSet is the rows of one transaction, per tenant in the order the
// tenants first appear.
type rowSet struct {
	tenants []*tenantRows
}

// tenantRows is what one tenant receives.
type tenantRows struct {
	id       string
	messages messageCols
	records  recordCols
	parts    partCols
	chunks   chunkCols
}

// tenant returns the rows of tenant id, adding it to the set if new.
func (s *rowSet) tenant(id string) *tenantRows {
	for _, t := range s.tenants {
		if t.id == id {
			return t
		}
	}
	t := &tenantRows{id: id}
	s.tenants = append(s.tenants, t)
	return t
}

// queue adds the set's statements to b: per tenant the switch into it and
// one INSERT per table that has rows (messages before the rows that refer
// to them), then the switch back to no tenant.
func (s *rowSet) queue(ctx context.Context, b *batch) error {
	for _, t := range s.tenants {
		if err := db.EnterTenant(ctx, b, t.id); err != nil {
			return err
		}
		for _, insert := range []func(context.Context, db.Execer, string) error{t.messages.insert, t.records.insert, t.parts.insert, t.chunks.insert} {
			if err := insert(ctx, b, t.id); err != nil {
				return err
			}
		}
	}
	return db.LeaveTenant(ctx, b)
}

// messageCols are xta_message rows.
type messageCols struct {
	id                                               []int64
	box, messageID, account, author, reader          []string
	peerTenant                                       []*string
	peerID                                           []*int64
	service, businessScenario, messageType, metadata []string
	size                                             []int64
	test                                             []bool
	notBefore, deliveredAt                           []*time.Time
	sentAt                                           []time.Time
	status                                           []int16
}

func (c *messageCols) add(id int64, box, account string, m messageRow) {
	c.id = append(c.id, id)
	c.box = append(c.box, box)
	c.messageID = append(c.messageID, m.messageID)
	c.account = append(c.account, account)
	c.author = append(c.author, m.author)
	c.reader = append(c.reader, m.reader)
	c.peerTenant = append(c.peerTenant, m.peerTenant)
	c.peerID = append(c.peerID, m.peerID)
	c.service = append(c.service, m.service)
	c.businessScenario = append(c.businessScenario, m.businessScenario)
	c.messageType = append(c.messageType, m.messageType)
	c.metadata = append(c.metadata, m.metadata)
	c.size = append(c.size, m.size)
	c.test = append(c.test, m.test)
	c.notBefore = append(c.notBefore, m.notBefore)
	c.sentAt = append(c.sentAt, m.sentAt)
	c.deliveredAt = append(c.deliveredAt, m.deliveredAt)
	c.status = append(c.status, m.status)
}

func (c *messageCols) insert(ctx context.Context, q db.Execer, tenantID string) error {
	if len(c.id) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `INSERT INTO xta_message (tenant_id, id, box, message_id, account, author, reader, peer_tenant, peer_id,
		service, business_scenario, message_type, metadata, content_size, test_msg, not_before, sent_at, delivered_at, status)
		SELECT $1::text, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[],
		$10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::boolean[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::smallint[])`,
		tenantID, c.id, c.box, c.messageID, c.account, c.author, c.reader, c.peerTenant, c.peerID,
		c.service, c.businessScenario, c.messageType, c.metadata, c.size, c.test, c.notBefore, c.sentAt, c.deliveredAt, c.status)
	if err != nil {
		return fmt.Errorf("msgbox: store messages: %w", err)
	}
	return nil
}

// recordCols are xta_report_record rows, inserted in their order (which is
// the order of the report), their reasons sealed under the tenant's data
// key.
type recordCols struct {
	message     []int64
	at          []time.Time
	level, code []string
	reason      [][]byte
	keyVersion  []int32
}

func (c *recordCols) add(key *sealing.DataKey, message int64, records ...Record) error {
	for _, r := range records {
		sealed, err := key.Seal(recordAAD(key.Tenant, message), []byte(r.Reason))
		if err != nil {
			return err
		}
		c.message = append(c.message, message)
		c.at = append(c.at, r.At)
		c.level = append(c.level, r.Level)
		c.code = append(c.code, r.Code)
		c.reason = append(c.reason, sealed)
		c.keyVersion = append(c.keyVersion, int32(key.Version))
	}
	return nil
}

func (c *recordCols) insert(ctx context.Context, q db.Execer, tenantID string) error {
	if len(c.message) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `INSERT INTO xta_report_record (tenant_id, message, at, level, code, reason, key_version)
		SELECT $1::text, * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::bytea[], $7::integer[])`,
		tenantID, c.message, c.at, c.level, c.code, c.reason, c.keyVersion)
	if err != nil {
		return fmt.Errorf("msgbox: add report records: %w", err)
	}
	return nil
}

// partCols are xta_part rows; empty optional attributes are stored as NULL.
type partCols struct {
	message                                                     []int64
	part                                                        []int16
	attachment                                                  []bool
	contentType, encoding, filename, partRef, description, lang []string
	size                                                        []int64
}

func (c *partCols) add(message int64, part int, p *Part) {
	c.message = append(c.message, message)
	c.part = append(c.part, int16(part))
	c.attachment = append(c.attachment, p.Attachment)
	c.contentType = append(c.contentType, p.ContentType)
	c.encoding = append(c.encoding, p.Encoding)
	c.filename = append(c.filename, p.Filename)
	c.partRef = append(c.partRef, p.Ref)
	c.description = append(c.description, p.Description)
	c.lang = append(c.lang, p.Lang)
	c.size = append(c.size, p.Size)
}

func (c *partCols) insert(ctx context.Context, q db.Execer, tenantID string) error {
	if len(c.message) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `INSERT INTO xta_part (tenant_id, message, part, attachment, content_type, encoding, filename, part_ref, description, lang, size)
		SELECT $1::text, message, part, attachment, content_type, NULLIF(encoding, ''), NULLIF(filename, ''), NULLIF(part_ref, ''),
		NULLIF(description, ''), NULLIF(lang, ''), size
		FROM unnest($2::bigint[], $3::smallint[], $4::boolean[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])
		AS u (message, part, attachment, content_type, encoding, filename, part_ref, description, lang, size)`,
		tenantID, c.message, c.part, c.attachment, c.contentType, c.encoding, c.filename, c.partRef, c.description, c.lang, c.size)
	if err != nil {
		return fmt.Errorf("msgbox: store parts: %w", err)
	}
	return nil
}

// chunkCols are xta_chunk rows, their content sealed under the tenant's
// data key.
type chunkCols struct {
	message    []int64
	part       []int16
	seq        []int32
	data       [][]byte
	keyVersion []int32
}

func (c *chunkCols) add(key *sealing.DataKey, message int64, part, seq int, data []byte) error {
	sealed, err := key.Seal(chunkAAD(key.Tenant, message, part, seq), data)
	if err != nil {
		return err
	}
	c.message = append(c.message, message)
	c.part = append(c.part, int16(part))
	c.seq = append(c.seq, int32(seq))
	c.data = append(c.data, sealed)
	c.keyVersion = append(c.keyVersion, int32(key.Version))
	return nil
}

func (c *chunkCols) insert(ctx context.Context, q db.Execer, tenantID string) error {
	if len(c.message) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `INSERT INTO xta_chunk (tenant_id, message, part, seq, data, key_version)
		SELECT $1::text, * FROM unnest($2::bigint[], $3::smallint[], $4::integer[], $5::bytea[], $6::integer[])`,
		tenantID, c.message, c.part, c.seq, c.data, c.keyVersion)
	if err != nil {
		return fmt.Errorf("msgbox: store content: %w", err)
	}
	return nil
}
