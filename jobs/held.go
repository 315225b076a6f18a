package jobs

import "sync"

// maxHeld bounds the bytes of message content a pipeline holds for its
// jobs.
const maxHeld = 64 << 20

// heldContents keeps the contents of messages this process's transport has
// just accepted and handed over, until their job loads them, so that the
// job need not read back from the database what the node has just stored.
// The database stays the source: a job on another node, after a restart,
// or past the bound reads the content from there.
type heldContents struct {
	mu    sync.Mutex
	m     map[int64][]byte
	bytes int
}

// put keeps a copy of a message's content, unless that would pass the
// bound: then it forgets everything it holds (contents of messages whose
// transaction rolled back, which no job will take, cannot pile up).
func (h *heldContents) put(inbox int64, content []byte) {
	if h == nil || len(content) == 0 || len(content) > maxHeld {
		return
	}
	c := append([]byte(nil), content...)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || h.bytes+len(c) > maxHeld {
		h.m, h.bytes = map[int64][]byte{}, 0
	}
	h.m[inbox] = c
	h.bytes += len(c)
}

// take removes and returns the contents held for the inboxes.
func (h *heldContents) take(inboxes []int64) map[int64][]byte {
	out := map[int64][]byte{}
	if h == nil {
		return out
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range inboxes {
		if c, ok := h.m[id]; ok {
			out[id] = c
			h.bytes -= len(c)
			delete(h.m, id)
		}
	}
	return out
}
