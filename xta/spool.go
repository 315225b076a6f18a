package xta

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// spoolMemory is how much of one content part stays in memory; more goes
// to a temporary file, so a 40 MB message is never held whole in memory.
const spoolMemory = 256 << 10

// errTooLarge is returned once the contents of one message exceed the
// container limit.
var errTooLarge = errors.New("xta: message exceeds the container size limit")

// budget counts the decoded content bytes of one message against the limit.
type budget struct {
	used, max int64
}

func (b *budget) take(n int) error {
	b.used += int64(n)
	if b.used > b.max {
		return errTooLarge
	}
	return nil
}

// spool holds one content part: in memory while small, in a temporary file
// beyond spoolMemory.
type spool struct {
	dir    string
	budget *budget
	mem    bytes.Buffer
	file   *os.File
	size   int64
}

func (s *spool) Write(p []byte) (int, error) {
	if err := s.budget.take(len(p)); err != nil {
		return 0, err
	}
	s.size += int64(len(p))
	if s.file == nil && s.mem.Len()+len(p) <= spoolMemory {
		return s.mem.Write(p)
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "parzelle-xta-*")
		if err != nil {
			return 0, fmt.Errorf("xta: spool: %w", err)
		}
		// Unlinked at once: the data lives only as long as the open file.
		_ = os.Remove(f.Name())
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			f.Close()
			return 0, fmt.Errorf("xta: spool: %w", err)
		}
		s.mem = bytes.Buffer{}
		s.file = f
	}
	n, err := s.file.Write(p)
	if err != nil {
		return n, fmt.Errorf("xta: spool: %w", err)
	}
	return n, nil
}

// Reader returns the spooled bytes from the start.
func (s *spool) Reader() (io.Reader, error) {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("xta: spool: %w", err)
	}
	return s.file, nil
}

// Close releases the temporary file, if any.
func (s *spool) Close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// base64Writer decodes base64 text written to it in pieces of any size,
// ignoring white space, and writes the bytes to dst.
type base64Writer struct {
	dst     io.Writer
	pending []byte // characters of an incomplete group (or, while a piece is decoded, the piece without white space)
	buf     []byte
	done    bool // padding seen: only white space may follow
}

// Write decodes the complete 4-character groups it has and keeps the rest
// for the next piece. A piece without white space, following a complete
// group, is decoded where it lies (Client.Send writes no white space);
// otherwise its characters are first gathered behind the pending ones.
func (w *base64Writer) Write(p []byte) (int, error) {
	src := p
	if len(w.pending) > 0 || hasSpace(p) {
		w.pending = slices.Grow(w.pending, len(p))
		before := len(w.pending)
		for _, c := range p {
			switch c {
			case ' ', '\t', '\r', '\n':
				continue
			}
			w.pending = append(w.pending, c)
		}
		if w.done && len(w.pending) > before {
			return 0, errors.New("xta: base64 content continues after its padding")
		}
		src = w.pending
	} else if w.done && len(p) > 0 {
		return 0, errors.New("xta: base64 content continues after its padding")
	}
	full := len(src) / 4 * 4
	if full > 0 {
		if cap(w.buf) < full/4*3 {
			w.buf = make([]byte, full/4*3)
		}
		n, err := base64.StdEncoding.Decode(w.buf[:full/4*3], src[:full])
		if err != nil {
			return 0, fmt.Errorf("xta: invalid base64 content: %w", err)
		}
		if src[full-1] == '=' {
			w.done = true
		}
		if _, err := w.dst.Write(w.buf[:n]); err != nil {
			return 0, err
		}
	}
	// src may be pending itself: append moves the rest to its start.
	w.pending = append(w.pending[:0], src[full:]...)
	return len(p), nil
}

// hasSpace reports whether p holds white space that base64 text may carry.
func hasSpace(p []byte) bool {
	return bytes.IndexByte(p, '\n') >= 0 || bytes.IndexByte(p, ' ') >= 0 || bytes.IndexByte(p, '\r') >= 0 || bytes.IndexByte(p, '\t') >= 0
}

// Close reports base64 text that ended in the middle of a group.
func (w *base64Writer) Close() error {
	if len(w.pending) != 0 {
		return errors.New("xta: base64 content is truncated")
	}
	return nil
}
