package osci

import (
	"bufio"
	"bytes"
	"crypto"
	_ "crypto/sha256" // digests of streamed parts
	_ "crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"strings"
)

// streamedDigests are the digests a streamed part gets as it passes: those
// of the signature's digest methods, since the signature is checked after
// the parts went by.
var streamedDigests = []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}

// maxResolveStreamed bounds what Resolve reads of a streamed part into
// memory (an encrypted content container the intermediary must open for a
// register inbox); larger parts are only ever streamed.
const maxResolveStreamed = 16 << 20

// mimeStream reads a MIME message as OSCI sends it part by part, without
// holding it whole.
type mimeStream struct {
	header map[string][]string
	params map[string]string
	parts  *multipart.Reader
	count  int
}

// openMIMEStream reads the message headers (the first lines) and starts
// on the parts.
func openMIMEStream(r io.Reader) (*mimeStream, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if len(head) > MaxMIMEHeaderBytes {
			return nil, fmt.Errorf("%w: message header: header section exceeds %d bytes", ErrMIME, MaxMIMEHeaderBytes)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: message header: %w", ErrMIME, err)
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	header, _, err := readHeader(head, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: message header: %w", ErrMIME, err)
	}
	ct := header.Get("Content-Type")
	mt, params, err := parseMediaType(ct)
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" || len(params["boundary"]) > 70 {
		return nil, fmt.Errorf("%w: Content-Type %q is no multipart type with a usable boundary", ErrMIME, ct)
	}
	return &mimeStream{header: header, params: params, parts: multipart.NewReader(br, params["boundary"])}, nil
}

// next returns the next part's headers, Content-ID and decoded body
// stream; io.EOF after the last.
func (s *mimeStream) next() (*MIMEPart, io.Reader, error) {
	p, err := s.parts.NextRawPart()
	if err == io.EOF {
		return nil, nil, io.EOF
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: part %d: %w", ErrMIME, s.count+1, err)
	}
	if s.count++; s.count > MaxMIMEParts {
		return nil, nil, fmt.Errorf("%w: more than %d parts", ErrMIME, MaxMIMEParts)
	}
	part := &MIMEPart{Header: p.Header, ContentID: strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(p.Header.Get("Content-ID")), "<"), ">")}
	body, err := decodingReader(p.Header.Get("Content-Transfer-Encoding"), p)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: part %d: %w", ErrMIME, s.count, err)
	}
	return part, body, nil
}

// decodingReader undoes a Content-Transfer-Encoding on a stream.
func decodingReader(cte string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "8-bit", "binary":
		return r, nil
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r), nil // skips line ends
	case "quoted-printable":
		return quotedprintable.NewReader(r), nil
	}
	return nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", cte)
}

// ScanMIME reads a MIME message from the stream open returns, holding only
// its root part (at most maxRoot bytes): the other parts stream past once,
// counted and digested, and are read again from a new stream when Resolve
// or a part's Open needs them. The root part must come first.
func ScanMIME(open func() (io.Reader, error), maxRoot int64) (*MIMEMessage, error) {
	r, err := open()
	if err != nil {
		return nil, err
	}
	s, err := openMIMEStream(r)
	if err != nil {
		return nil, err
	}
	msg := &MIMEMessage{Header: s.header, Params: s.params, reopen: open}
	for {
		part, body, err := s.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(msg.Parts) == 0 {
			if start := s.params["start"]; start != "" && strings.Trim(start, "<>") != part.ContentID {
				return nil, fmt.Errorf("%w: the root part <%s> must come first in a streamed message", ErrMIME, strings.Trim(start, "<>"))
			}
			if part.Body, err = io.ReadAll(io.LimitReader(body, maxRoot+1)); err != nil {
				return nil, fmt.Errorf("%w: root part: %w", ErrMIME, err)
			}
			if int64(len(part.Body)) > maxRoot {
				return nil, refuse(CodeMessageTooLarge, "the SOAP envelope of this message is larger than %d bytes; large content travels in attachments", maxRoot)
			}
			msg.Parts = append(msg.Parts, part)
			continue
		}
		part.digests = map[crypto.Hash][]byte{}
		hashes := make([]hash.Hash, len(streamedDigests))
		writers := make([]io.Writer, len(streamedDigests))
		for i, h := range streamedDigests {
			hashes[i] = h.New()
			writers[i] = hashes[i]
		}
		n, err := io.Copy(io.MultiWriter(writers...), body)
		if err != nil {
			return nil, fmt.Errorf("%w: part <%s>: %w", ErrMIME, part.ContentID, err)
		}
		for i, h := range streamedDigests {
			part.digests[h] = hashes[i].Sum(nil)
		}
		part.Size, part.streamed = n, true
		msg.Parts = append(msg.Parts, part)
	}
	if len(msg.Parts) == 0 {
		return nil, fmt.Errorf("%w: the message has no parts", ErrMIME)
	}
	return msg, nil
}

// Open returns a stream of the part's decoded body: its bytes when they
// are held, else read again from the message's stream.
func (m *MIMEMessage) Open(p *MIMEPart) (io.Reader, error) {
	if !p.streamed {
		return bytes.NewReader(p.Body), nil
	}
	r, err := m.reopen()
	if err != nil {
		return nil, err
	}
	s, err := openMIMEStream(r)
	if err != nil {
		return nil, err
	}
	for {
		part, body, err := s.next()
		if err == io.EOF {
			return nil, fmt.Errorf("osci: the part <%s> is gone from the message's stream", p.ContentID)
		}
		if err != nil {
			return nil, err
		}
		if part.ContentID == p.ContentID && s.count > 1 {
			return body, nil
		}
	}
}

// streamedDigest is the digest of a streamed part a "cid:" reference
// names, for the signature check; nil for a part held in memory.
func (m *MIMEMessage) streamedDigest(uri string, h crypto.Hash) ([]byte, error) {
	p, err := m.partOf(uri)
	if err != nil || !p.streamed {
		return nil, err
	}
	sum, ok := p.digests[h]
	if !ok {
		return nil, fmt.Errorf("osci: no %v digest of the streamed part <%s>", h, p.ContentID)
	}
	return sum, nil
}

// errStreamedTooLarge refuses to read a large streamed part into memory.
var errStreamedTooLarge = errors.New("the part is too large to be read into memory")
