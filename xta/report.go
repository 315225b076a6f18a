package xta

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/parzelle/parzelle/msgbox"
)

func (s *Server) getTransportReport(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	messageID := c.req.Body.TrimmedText()
	m, err := s.box.Report(ctx, owner.ID, c.account, messageID)
	if err != nil {
		return boxFault(err)
	}
	meta, err := metadataWithTimes(m.Metadata, deliveryTimes{initialSend: &m.Sent, delivery: m.Delivered, initialFetch: m.Fetched, reception: m.Closed})
	if err != nil {
		return err
	}
	c.reply("", transportReport(meta, s.now(), s.Identity, m.Status, m.Records))
	return nil
}

// transportReport renders an xta:TransportReport.
func transportReport(meta string, now time.Time, identity string, status int, records []msgbox.Record) string {
	var b strings.Builder
	b.WriteString(`<xta:TransportReport>` + meta + `<xta:ReportTime>` + xsTime(now) + `</xta:ReportTime><xta:XTAServerIdentity>` + esc(identity) +
		`</xta:XTAServerIdentity><xta:MessageStatus><xta:Status>` + itoa(int64(status)) + `</xta:Status>`)
	for _, l := range []struct{ level, list, item string }{{"error", "ErrorList", "Error"}, {"warning", "WarnList", "Warning"}, {"info", "InfoList", "Info"}} {
		opened := false
		for _, r := range records {
			if r.Level != l.level {
				continue
			}
			if !opened {
				b.WriteString(`<xta:` + l.list + `>`)
				opened = true
			}
			fmt.Fprintf(&b, `<xta:%s><xta:Timestamp>%s</xta:Timestamp><xta:Code listURI="%s" listVersionID="%s"><code>%s</code></xta:Code><xta:Reason>%s</xta:Reason></xta:%s>`,
				l.item, xsTime(r.At), recordListURI, recordListVersion, esc(r.Code), esc(r.Reason), l.item)
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
	if err := s.box.Cancel(ctx, owner.ID, c.account, c.req.Body.TrimmedText()); err != nil {
		return boxFault(err)
	}
	c.reply("", "")
	return nil
}
