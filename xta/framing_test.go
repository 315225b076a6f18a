package xta_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/msgbox"
)

// lengthRecorder notes the Content-Length of each request it carries (-1
// for a body of unknown length, which goes out chunked).
type lengthRecorder struct {
	next    http.RoundTripper
	mu      sync.Mutex
	lengths []int64
}

func (l *lengthRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	n := r.ContentLength
	if n == 0 && r.Body != nil && r.Body != http.NoBody {
		n = -1
	}
	l.mu.Lock()
	l.lengths = append(l.lengths, n)
	l.mu.Unlock()
	return l.next.RoundTrip(r)
}

func (l *lengthRecorder) last() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lengths[len(l.lengths)-1]
}

// TestSendFraming: Send encodes a small message held in memory into one
// buffer and sends it with a Content-Length, and streams (chunked) content
// it cannot size and content above its buffer limit; inline and with
// MTOM, the reader gets every part intact.
func TestSendFraming(t *testing.T) {
	h := startHarness(t)
	ctx := context.Background()
	small := make([]byte, 10<<10)
	large := make([]byte, 300<<10) // more than Send buffers
	rand.Read(small)
	rand.Read(large)
	box := h.client("koeln", reader, false)
	cases := []struct {
		name     string
		data     func() io.Reader
		sent     []byte
		buffered bool
	}{
		{"in memory", func() io.Reader { return bytes.NewReader(small) }, small, true},
		{"unknown length", func() io.Reader { return io.MultiReader(bytes.NewReader(small)) }, small, false},
		{"above the buffer limit", func() io.Reader { return bytes.NewReader(large) }, large, false},
	}
	for _, mtom := range []bool{false, true} {
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%s/mtom=%v", tc.name, mtom), func(t *testing.T) {
				sender := h.client("muenchen", author, mtom)
				rec := &lengthRecorder{next: sender.HTTP.Transport}
				sender.HTTP.Transport = rec
				id := fmt.Sprintf("urn:de:xta:messageid:framing:%v-%d", mtom, i)
				m := outgoing(id, []byte(`<nachricht/>`), nil)
				m.Attachments[0].Data = tc.data()
				if err := sender.Send(ctx, m); err != nil {
					t.Fatalf("sendMessage: %v", err)
				}
				if n := rec.last(); (n > 0) != tc.buffered {
					t.Errorf("Content-Length %d; want one only for a buffered message (%v)", n, tc.buffered)
				}
				// Delivered (yellow: <nachricht> has no installed schema).
				waitStatus(t, sender, id, msgbox.StatusYellow)
				got, err := box.GetMessage(ctx, id)
				if err != nil {
					t.Fatalf("getMessage: %v", err)
				}
				if len(got.Contents) != 2 || string(got.Contents[0].Data) != `<nachricht/>` || !bytes.Equal(got.Contents[1].Data, tc.sent) {
					t.Fatalf("the reader got %d parts that differ from those sent", len(got.Contents))
				}
			})
		}
	}
}
