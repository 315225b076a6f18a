package xmlsafe

import "encoding/xml"

// Arena lends parses the memory of their trees and takes it back on Reset,
// for callers that parse many small documents in a row and are done with
// each tree before the next (the mapping engine): their trees then cost
// no garbage collection. Strings in a tree (names, values, text) do not
// live in the arena and stay valid after Reset; elements and the slices
// that hold them do not. An Arena is not safe for concurrent use.
type Arena struct {
	els  chunks[Element]
	ptrs chunks[*Element]
	nds  chunks[Node]
	atts chunks[xml.Attr]
	strs chunks[string]
}

// Reset takes back everything lent since the last Reset: every tree parsed
// with the arena is invalid from now on.
func (a *Arena) Reset() {
	a.els.reset()
	a.ptrs.reset()
	a.nds.reset()
	a.atts.reset()
	a.strs.reset()
}

// chunks are the blocks of one kind an arena holds: those before next are
// lent out.
type chunks[T any] struct {
	blocks [][]T
	next   int
}

// lend returns a zeroed block of at least n from c, a new one when c has
// none that is free and large enough.
func lend[T any](c *chunks[T], n int) []T {
	for c.next < len(c.blocks) {
		b := c.blocks[c.next]
		c.next++
		if len(b) >= n {
			return b
		}
	}
	b := make([]T, n)
	c.blocks = append(c.blocks, b)
	c.next = len(c.blocks)
	return b
}

func (c *chunks[T]) reset() {
	for _, b := range c.blocks[:c.next] {
		clear(b)
	}
	c.next = 0
}
