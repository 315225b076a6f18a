package xta

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlsafe"
)

// The report records' code list (the message boxes').
const (
	recordListURI     = msgbox.RecordListURI
	recordListVersion = msgbox.RecordListVersion
)

// maxCheckedContent bounds the XML content that is schema-checked on
// sendMessage; larger content is accepted unchecked (noted in the report).
const maxCheckedContent = 16 << 20

func name(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }

// sendMeta is what sendMessage reads from oscimeta:MessageMetaData.
type sendMeta struct {
	author, reader                         *Party
	messageID                              string
	service, businessScenario, messageType string
	notBefore                              *time.Time
	test                                   bool
}

// MetaData is what an oscimeta:MessageMetaData says of its message, as
// sendMessage reads it (and an OSCI delivery carries it as a custom
// header).
type MetaData struct {
	Author, Reader, MessageID, Service, BusinessScenario, MessageType string
}

// ReadMetaData reads a MessageMetaData element; an error (an XTA *Fault)
// names what is missing or malformed.
func ReadMetaData(m *xmlsafe.Element) (MetaData, error) {
	sm, f := readSendMeta(m)
	if f != nil {
		return MetaData{}, f
	}
	return MetaData{Author: sm.author.ID, Reader: sm.reader.ID, MessageID: sm.messageID, Service: sm.service,
		BusinessScenario: sm.businessScenario, MessageType: sm.messageType}, nil
}

func readSendMeta(m *xmlsafe.Element) (*sendMeta, *Fault) {
	if m == nil {
		return nil, xtaFault(CodeNoParameter, "the oscimeta:MessageMetaData header is missing")
	}
	sm := &sendMeta{}
	if a := m.Path(name(NSOSCIMeta, "Originators"), name(NSOSCIMeta, "Author")); a != nil {
		sm.author = partyFrom(a)
	}
	if r := m.Path(name(NSOSCIMeta, "Destinations"), name(NSOSCIMeta, "Reader")); r != nil {
		sm.reader = partyFrom(r)
	}
	sm.messageID = m.Path(name(NSOSCIMeta, "MsgIdentification"), name(NSWSA, "MessageID")).TrimmedText()
	q := m.Child(NSOSCIMeta, "Qualifier")
	if q != nil {
		sm.service = q.Child(NSOSCIMeta, "Service").TrimmedText()
		if bs := q.Child(NSOSCIMeta, "BusinessScenario"); bs != nil {
			if d := bs.Child(NSOSCIMeta, "Defined"); d != nil {
				sm.businessScenario = d.Child("", "code").TrimmedText()
			} else {
				sm.businessScenario = bs.Child(NSOSCIMeta, "Undefined").TrimmedText()
			}
		}
		if mt := q.Child(NSOSCIMeta, "MessageType"); mt != nil {
			sm.messageType = mt.Child("", "code").TrimmedText()
		}
	}
	if nb := m.Path(name(NSOSCIMeta, "DeliveryAttributes"), name(NSOSCIMeta, "NotBefore")); nb != nil {
		t, err := time.Parse(time.RFC3339, nb.TrimmedText())
		if err != nil {
			return nil, xtaFault(CodeBadParameters, "NotBefore %q is not a date and time", nb.TrimmedText())
		}
		sm.notBefore = &t
	}
	if v, ok := m.Attribute("TestMsg"); ok {
		sm.test = v == "true" || v == "1"
	}
	switch {
	case sm.author == nil || sm.author.ID == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData names no Author")
	case sm.reader == nil || sm.reader.ID == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData names no Reader")
	case sm.messageID == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData carries no MsgIdentification/wsa:MessageID")
	case q == nil || sm.service == "" || sm.businessScenario == "" || sm.messageType == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData lacks the Qualifier's Service, BusinessScenario or MessageType")
	}
	return sm, nil
}

// sendMessage accepts a message: prepareSend checks it and describes it
// for the message boxes, which store it (grouped with the others accepted
// at the same time when it is small). The client is answered once its
// message is committed.
func (s *Server) sendMessage(ctx context.Context, c *call) error {
	m, err := s.prepareSend(c)
	if err != nil {
		return err
	}
	if err := s.box.Accept(ctx, m); err != nil {
		return boxFault(err)
	}
	c.reply("", "")
	return nil
}

// prepareSend does everything of sendMessage that comes before storing it:
// it reads and checks the metadata, the account and the contents, and
// returns the message for the boxes, or the fault to answer with.
func (s *Server) prepareSend(c *call) (*msgbox.Message, error) {
	sm, f := readSendMeta(c.req.Metadata)
	if f != nil {
		return nil, f
	}
	author, f := s.account(c, sm.author)
	if f != nil {
		return nil, f
	}
	if len(c.req.Contents) == 0 {
		return nil, xtaFault(CodeBadParameters, "only a plain ContentContainer is accepted; encrypted containers (xenc:EncryptedData) are not supported by this node")
	}
	var size int64
	for _, ct := range c.req.Contents {
		size += ct.Size()
		if ct.DeclaredSize != 0 && ct.DeclaredSize != ct.Size() {
			c.warnings = append(c.warnings, fmt.Sprintf("content %q declares size %d but carries %d bytes", ct.Filename, ct.DeclaredSize, ct.Size()))
		}
	}
	if c.op.name == "sendMessageSync" {
		// This node offers no synchronous services: every reader it hosts
		// fetches from its message box.
		return nil, xtaFault(CodeOnlyAsync, "the reader %q is served asynchronously; use sendMessage", sm.reader.ID)
	}
	now := s.now()
	contentRecords, err := s.checkContents(c, author, now)
	if err != nil {
		return nil, err
	}
	var metaXML bytes.Buffer
	if err := c.req.Metadata.Write(&metaXML, prefixes); err != nil {
		return nil, fmt.Errorf("xta: serialize metadata: %w", err)
	}
	m := &msgbox.Message{
		AuthorTenant: author.ID, MessageID: sm.messageID, Author: sm.author.ID, Reader: sm.reader.ID, Service: sm.service,
		BusinessScenario: sm.businessScenario, MessageType: sm.messageType, Transport: "xta", Metadata: metaXML.String(),
		Test: sm.test, NotBefore: sm.notBefore, SentAt: now, Validated: c.validated[0],
	}
	m.Records = []msgbox.Record{{At: now, Level: "info", Code: msgbox.RecordAccepted, Reason: "Nachricht angenommen (sendMessage)"}}
	if len(c.warnings) == 0 {
		m.Records = append(m.Records, msgbox.Record{At: now, Level: "info", Code: msgbox.RecordValidated, Reason: "Nachricht gegen die XTA-2-V3-Schemata geprüft"})
	}
	for _, w := range c.warnings {
		m.Records = append(m.Records, msgbox.Record{At: now, Level: "warning", Code: msgbox.RecordValidated, Reason: w})
	}
	m.Records = append(m.Records, contentRecords...)
	// Small contents are handed to the boxes in memory, larger ones are
	// read from their spools.
	small := size <= msgbox.ChunkSize
	for _, ct := range c.req.Contents {
		p := msgbox.Part{Attachment: ct.Attachment, ContentType: ct.ContentType, Encoding: ct.Encoding, Filename: ct.Filename, Ref: ct.ID,
			Description: ct.Description, Lang: ct.Lang, Size: ct.Size()}
		if ct.data != nil {
			data := ct.data
			p.Open = data.Reader
			if small && ct.Size() > 0 {
				if p.Data, err = data.Bytes(); err != nil {
					return nil, err
				}
			}
		}
		m.Parts = append(m.Parts, p)
	}
	return m, nil
}

// boxFault is a message box's refusal as an XTA fault.
func boxFault(err error) error {
	var be *msgbox.Error
	if !errors.As(err, &be) {
		return err
	}
	switch be.Kind {
	case msgbox.KindMessageIDUsed:
		return xtaFault(CodeMessageIDUsed, "%s", be.Detail)
	case msgbox.KindNoMessage:
		return xtaFault(CodeUnknownMessageID, "%s", be.Detail)
	case msgbox.KindNotBeforeUnset:
		return xtaFault(CodeNotBeforeNotSet, "%s", be.Detail)
	case msgbox.KindNotBeforePassed:
		return xtaFault(CodeNotBeforePassed, "%s", be.Detail)
	}
	return err
}

// checkContents applies the schema policy (msgbox.CheckSchema) to the
// message's XML content (xta:Message parts whose first non-blank byte is
// '<'; attachments and other content are not subject): content whose
// schema is installed must be valid (else 9050, with line and column of
// each problem); content without an installed schema is refused (9050) or
// accepted with a warning record, as the author's tenant says. It returns
// the report records to add.
func (s *Server) checkContents(c *call, author *tenant.Config, now time.Time) ([]msgbox.Record, error) {
	var records []msgbox.Record
	for i, ct := range c.req.Contents {
		if ct.Attachment || ct.Size() == 0 {
			continue
		}
		name := ct.Filename
		if name == "" {
			name = fmt.Sprintf("Teil %d", i+1)
		}
		if ct.Size() > maxCheckedContent {
			if looksLikeXML(ct.data.head()) {
				records = append(records, msgbox.Record{At: now, Level: "info", Code: msgbox.RecordValidated, Reason: fmt.Sprintf("Inhalt %s ist größer als %d MiB und wurde nicht gegen ein Fachschema geprüft", name, maxCheckedContent>>20)})
			}
			continue
		}
		if !looksLikeXML(ct.data.head()) {
			continue
		}
		doc, err := ct.data.Bytes()
		if err != nil {
			return nil, err
		}
		check, err := msgbox.CheckSchema(s.schemas, author.Schemas, doc)
		if err != nil {
			return nil, fmt.Errorf("xta: content %q: %w", name, err)
		}
		what, whatDE := "namespace "+check.Namespace, "den Namensraum "+check.Namespace
		if check.Namespace == "" {
			what, whatDE = "documents without a namespace", "Dokumente ohne Namensraum"
		}
		switch {
		case !check.XML:
			// Not XML after all (or not well-formed up to its root):
			// transported as opaque content.
		case check.Refused:
			return nil, xtaFault(CodeSchemaViolation, "no schema is installed on this node for %s (root element of content %q), and the policy of tenant %s refuses such messages", what, name, author.ID)
		case check.Missing:
			records = append(records, msgbox.Record{At: now, Level: "warning", Code: msgbox.RecordSchemaMissing,
				Reason: fmt.Sprintf("Kein Schema für %s installiert (Inhalt %s): Nachricht ungeprüft angenommen (Richtlinie des Mandanten: warnen)", whatDE, name)})
		case check.Invalid != nil:
			return nil, xtaFault(CodeSchemaViolation, "content %q is not valid against %s: %s", name, check.Set, check.Invalid.Summary(10))
		default:
			records = append(records, msgbox.Record{At: now, Level: "info", Code: msgbox.RecordValidated, Reason: fmt.Sprintf("Inhalt %s gegen das Schema %s geprüft", name, check.Set)})
			if c.validated == nil {
				c.validated = map[int]bool{}
			}
			c.validated[i] = true
		}
	}
	return records, nil
}

// looksLikeXML reports whether content begins, after white space and a
// UTF-8 byte order mark, with '<'.
func looksLikeXML(head []byte) bool {
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	head = bytes.TrimLeft(head, " \t\r\n")
	return len(head) > 0 && head[0] == '<'
}

// head returns the first bytes of the spooled content (up to 512), without
// moving the read position.
func (s *spool) head() []byte {
	if s.file == nil {
		b := s.mem.Bytes()
		return b[:min(len(b), 512)]
	}
	buf := make([]byte, min(s.size, 512))
	n, _ := s.file.ReadAt(buf, 0)
	return buf[:n]
}

// Bytes returns the whole spooled content: the memory buffer itself while
// small, else a copy read from the file (without moving the read position).
func (s *spool) Bytes() ([]byte, error) {
	if s.file == nil {
		return s.mem.Bytes(), nil
	}
	buf := make([]byte, s.size)
	if _, err := s.file.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("xta: read spooled content: %w", err)
	}
	return buf, nil
}
