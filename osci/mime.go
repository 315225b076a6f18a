package osci

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"net/url"
	"strings"
)

// MIME limits: ParseMIME reads a message held whole in memory, so its
// size is bounded by the caller (ReadMIME's maxBytes); ScanMIME holds only
// the root part (bounded by its maxRoot). These bound the structure.
const (
	// MaxMIMEParts is the most parts one message may have.
	MaxMIMEParts = 1000
	// MaxMIMEHeaderBytes bounds one header section (message or part).
	MaxMIMEHeaderBytes = 16 << 10
	// MaxMIMEHeaderFields bounds the fields of one header section.
	MaxMIMEHeaderFields = 100
)

// ErrMIME is wrapped by every error about a malformed MIME message.
var ErrMIME = errors.New("osci: malformed MIME message")

// MIMEMessage is a multipart MIME message as OSCI 1.2 sends it: the MIME
// headers are the first lines of the HTTP body, followed by a
// Multipart/Related body whose root part is the SOAP envelope and whose
// other parts are attachments named by Content-ID.
type MIMEMessage struct {
	Header textproto.MIMEHeader
	// MediaType is the lower-cased media type ("multipart/related"), Params
	// its parameters (boundary, type, start, …).
	MediaType string
	Params    map[string]string
	Parts     []*MIMEPart
	// reopen reads the message again from its start, for a message
	// ScanMIME streamed.
	reopen func() (io.Reader, error)
}

// MIMEPart is one body part.
type MIMEPart struct {
	Header textproto.MIMEHeader
	// ContentID is the Content-ID without its angle brackets.
	ContentID string
	// Raw are the part's body bytes as they were on the wire; Offset is
	// where they start in the message.
	Raw    []byte
	Offset int64
	// Body is Raw with the Content-Transfer-Encoding undone; nil for a
	// part ScanMIME streamed past, which has its Size (decoded) and
	// digests instead, and is read again with MIMEMessage.Open.
	Body     []byte
	Size     int64
	streamed bool
	digests  map[crypto.Hash][]byte
}

// ReadMIME reads a whole MIME message of at most maxBytes from r and parses
// it with ParseMIME.
func ReadMIME(r io.Reader, maxBytes int64) (*MIMEMessage, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("osci: read MIME message: %w", err)
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("%w: the message exceeds the limit of %d bytes", ErrMIME, maxBytes)
	}
	return ParseMIME(data)
}

// ParseMIME parses a multipart MIME message that starts with its headers.
// Lines may end in CRLF (as OSCI requires) or in LF alone. The parts keep
// slices of data.
func ParseMIME(data []byte) (*MIMEMessage, error) {
	header, bodyAt, err := readHeader(data, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: message header: %w", ErrMIME, err)
	}
	ct := header.Get("Content-Type")
	if ct == "" {
		return nil, fmt.Errorf("%w: the message has no Content-Type header (are the MIME headers missing from the start of the body?)", ErrMIME)
	}
	mt, params, err := parseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("%w: Content-Type %q: %w", ErrMIME, ct, err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return nil, fmt.Errorf("%w: Content-Type %q is not multipart", ErrMIME, mt)
	}
	boundary := params["boundary"]
	if boundary == "" || len(boundary) > 70 {
		return nil, fmt.Errorf("%w: Content-Type %q has no usable boundary (1 to 70 characters)", ErrMIME, ct)
	}
	msg := &MIMEMessage{Header: header, MediaType: mt, Params: params}

	delim := []byte("--" + boundary)
	// The first delimiter is at the start of the body or after a line end.
	pos := bodyAt
	if !bytes.HasPrefix(data[pos:], delim) {
		i := bytes.Index(data[pos:], append([]byte("\n"), delim...))
		if i < 0 {
			return nil, fmt.Errorf("%w: no part starts with the boundary %q", ErrMIME, boundary)
		}
		pos += i + 1
	}
	for {
		pos += len(delim)
		if bytes.HasPrefix(data[pos:], []byte("--")) {
			return msg, nil // close delimiter; the epilogue is ignored
		}
		// Transport padding, then the line end.
		for pos < len(data) && (data[pos] == ' ' || data[pos] == '\t') {
			pos++
		}
		switch {
		case bytes.HasPrefix(data[pos:], []byte("\r\n")):
			pos += 2
		case bytes.HasPrefix(data[pos:], []byte("\n")):
			pos++
		default:
			return nil, fmt.Errorf("%w: boundary line of part %d is not followed by a line end", ErrMIME, len(msg.Parts)+1)
		}
		if len(msg.Parts) == MaxMIMEParts {
			return nil, fmt.Errorf("%w: more than %d parts", ErrMIME, MaxMIMEParts)
		}
		ph, at, err := readHeader(data, pos)
		if err != nil {
			return nil, fmt.Errorf("%w: header of part %d: %w", ErrMIME, len(msg.Parts)+1, err)
		}
		i := bytes.Index(data[at:], append([]byte("\n"), delim...))
		if i < 0 {
			return nil, fmt.Errorf("%w: part %d is not closed by the boundary (message truncated?)", ErrMIME, len(msg.Parts)+1)
		}
		end := at + i
		if end > at && data[end-1] == '\r' {
			end--
		}
		part := &MIMEPart{Header: ph, Raw: data[at:end], Offset: int64(at)}
		part.ContentID = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(ph.Get("Content-ID")), "<"), ">")
		// A part's Content-Length header is ignored: the boundary ends a
		// part, and Governikus writes Content-Length values that do not
		// match (2202 for a 4047-byte transport-encrypted envelope).
		if part.Body, err = decodeTransfer(ph.Get("Content-Transfer-Encoding"), part.Raw); err != nil {
			return nil, fmt.Errorf("%w: part %d (Content-ID %q): %w", ErrMIME, len(msg.Parts)+1, part.ContentID, err)
		}
		msg.Parts = append(msg.Parts, part)
		pos = at + i + 1
	}
}

// Part returns the part with the Content-ID (with or without angle
// brackets), or nil.
func (m *MIMEMessage) Part(contentID string) *MIMEPart {
	contentID = strings.TrimSuffix(strings.TrimPrefix(contentID, "<"), ">")
	for _, p := range m.Parts {
		if p.ContentID == contentID {
			return p
		}
	}
	return nil
}

// Root returns the root part: the one the "start" parameter names, else the
// first.
func (m *MIMEMessage) Root() *MIMEPart {
	if s := m.Params["start"]; s != "" {
		return m.Part(s)
	}
	if len(m.Parts) == 0 {
		return nil
	}
	return m.Parts[0]
}

// Resolve returns the decoded body of the part a "cid:" URI (RFC 2392)
// names; it serves as an xmlenc.Resolver and for signature references.
func (m *MIMEMessage) Resolve(uri string) ([]byte, error) {
	p, err := m.partOf(uri)
	if err != nil || !p.streamed {
		return p.body(), err
	}
	if p.Size > maxResolveStreamed {
		return nil, fmt.Errorf("osci: <%s> has %d bytes: %w", p.ContentID, p.Size, errStreamedTooLarge)
	}
	r, err := m.Open(p)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// body is the part's held body (nil for no part).
func (p *MIMEPart) body() []byte {
	if p == nil {
		return nil
	}
	return p.Body
}

// partOf returns the part a "cid:" URI (RFC 2392) names.
func (m *MIMEMessage) partOf(uri string) (*MIMEPart, error) {
	rest, ok := strings.CutPrefix(uri, "cid:")
	if !ok {
		return nil, fmt.Errorf("osci: reference %q is not a cid: URI", uri)
	}
	id, err := url.PathUnescape(rest)
	if err != nil {
		return nil, fmt.Errorf("osci: reference %q: %w", uri, err)
	}
	p := m.Part(id)
	if p == nil {
		return nil, fmt.Errorf("osci: the message has no MIME part with Content-ID <%s>", id)
	}
	return p, nil
}

// readHeader reads a header section starting at pos and returns it and the
// offset just past the empty line that ends it.
func readHeader(data []byte, pos int) (textproto.MIMEHeader, int, error) {
	h := textproto.MIMEHeader{}
	start := pos
	var key string
	fields := 0
	for {
		if pos-start > MaxMIMEHeaderBytes {
			return nil, 0, fmt.Errorf("header section exceeds %d bytes", MaxMIMEHeaderBytes)
		}
		nl := bytes.IndexByte(data[pos:], '\n')
		if nl < 0 {
			return nil, 0, errors.New("header section does not end with an empty line")
		}
		line := data[pos : pos+nl]
		pos += nl + 1
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return h, pos, nil
		}
		if line[0] == ' ' || line[0] == '\t' { // folded continuation
			if key == "" {
				return nil, 0, errors.New("header section starts with a continuation line")
			}
			vs := h[key]
			vs[len(vs)-1] += " " + strings.TrimSpace(string(line))
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(k) == 0 || bytes.ContainsAny(k, " \t") {
			return nil, 0, fmt.Errorf("header line %q is not \"Name: value\"", truncate(line))
		}
		if fields++; fields > MaxMIMEHeaderFields {
			return nil, 0, fmt.Errorf("more than %d header fields", MaxMIMEHeaderFields)
		}
		key = textproto.CanonicalMIMEHeaderKey(string(k))
		h[key] = append(h[key], strings.TrimSpace(string(v)))
	}
}

func truncate(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

// parseMediaType is mime.ParseMediaType, tolerant of the unquoted "/" and
// "+" OSCI libraries write into boundaries.
func parseMediaType(v string) (string, map[string]string, error) {
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return mt, params, nil
	}
	if !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return "", nil, err
	}
	pieces := strings.Split(v, ";")
	mt = strings.ToLower(strings.TrimSpace(pieces[0]))
	params = map[string]string{}
	for _, p := range pieces[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			if strings.TrimSpace(p) == "" {
				continue
			}
			return "", nil, fmt.Errorf("parameter %q has no value", strings.TrimSpace(p))
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		params[strings.ToLower(strings.TrimSpace(k))] = val
	}
	return mt, params, nil
}

// decodeTransfer undoes a Content-Transfer-Encoding.
func decodeTransfer(cte string, raw []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "8-bit", "binary": // "8-bit" is how Governikus spells it
		return raw, nil
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, raw)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			return nil, fmt.Errorf("base64 body: %w", err)
		}
		return out[:n], nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return nil, fmt.Errorf("quoted-printable body: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", cte)
}
