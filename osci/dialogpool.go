package osci

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// dialogPool keeps the client role's open dialogs for the next delivery
// to the same intermediary with the same keys, one delivery at a time per
// dialog: a delivery then costs getMessageId and storeDelivery, not
// initDialog and exitDialog as well (each request is a signature and a
// decryption on both sides).
type dialogPool struct {
	mu   sync.Mutex
	idle map[[sha256.Size]byte][]pooledDialog
}

type pooledDialog struct {
	s     *Session
	since time.Time
}

const (
	// dialogIdle is how long a dialog waits in the pool: well below the
	// intermediary's idle timeout (Parzelle's: 15 minutes).
	dialogIdle = time.Minute
	// dialogsPerKey bounds the dialogs kept per intermediary and keys.
	dialogsPerKey = 32
)

// dialogKey names the intermediary and the keys a dialog was opened with.
func dialogKey(c *Client) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(c.URL))
	for _, raw := range [][]byte{c.IntermediaryCipher.Raw, c.IntermediarySignature.Raw, c.Signer.Certificate().Raw, c.Cipher.Certificate().Raw} {
		h.Write([]byte{0})
		h.Write(raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// open returns a pooled dialog of the client's intermediary and keys
// (reused true), or opens a new one.
func (p *dialogPool) open(ctx context.Context, c *Client) (s *Session, reused bool, err error) {
	key := dialogKey(c)
	p.mu.Lock()
	for list := p.idle[key]; len(list) > 0; list = p.idle[key] {
		d := list[len(list)-1]
		p.idle[key] = list[:len(list)-1]
		if time.Since(d.since) < dialogIdle {
			p.mu.Unlock()
			return d.s, true, nil
		}
		// Stale: the intermediary may have ended it; it is left to end
		// there.
	}
	p.mu.Unlock()
	s, err = c.Open(ctx)
	return s, false, err
}

// put keeps a dialog whose last exchange went through for the next
// delivery; one beyond the bound is closed.
func (p *dialogPool) put(ctx context.Context, s *Session) {
	key := dialogKey(s.c)
	p.mu.Lock()
	if p.idle == nil {
		p.idle = map[[sha256.Size]byte][]pooledDialog{}
	}
	if len(p.idle[key]) < dialogsPerKey {
		p.idle[key] = append(p.idle[key], pooledDialog{s, time.Now()})
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = s.Close(ctx)
}
