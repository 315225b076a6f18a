package jobs

import (
	"bytes"
	"testing"
)

func TestHeldContents(t *testing.T) {
	var h heldContents
	content := []byte("<m/>")
	h.put(1, content)
	content[1] = 'x' // the transport's buffer: the held copy must not change
	h.put(2, nil)    // nothing to hold
	got := h.take([]int64{1, 2, 3})
	if len(got) != 1 || !bytes.Equal(got[1], []byte("<m/>")) {
		t.Fatalf("take = %v, want only 1 → <m/>", got)
	}
	if again := h.take([]int64{1}); len(again) != 0 || h.bytes != 0 {
		t.Fatalf("taken twice: %v, %d bytes still counted", again, h.bytes)
	}

	// Past the bound it forgets what it holds and starts again.
	big := make([]byte, maxHeld/2+1)
	h.put(10, big)
	h.put(11, big)
	if got := h.take([]int64{10, 11}); len(got) != 1 || got[11] == nil {
		t.Fatalf("after passing the bound: holds %d of 2, want only the newest", len(got))
	}
	if h.put(12, make([]byte, maxHeld+1)); len(h.m) != 0 {
		t.Fatal("a content larger than the bound was held")
	}
	var none *heldContents
	none.put(1, content)
	if len(none.take([]int64{1})) != 0 {
		t.Fatal("a nil holder held something")
	}
}
