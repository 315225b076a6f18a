package register

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// badUnicode is the offset in a JSON body of the first byte that is not
// UTF-8 or of a \u escape of a lone surrogate (which encoding/json would
// quietly turn into U+FFFD), or -1.
func badUnicode(body []byte) int {
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		if body[i] == '\\' && i+1 < len(body) {
			if body[i+1] != 'u' {
				i += 2 // an escaped character: \\, \" …
				continue
			}
			if hi, ok := hex4(body[i+2:]); ok && utf16.IsSurrogate(rune(hi)) {
				lo, ok := hex4(body[min(i+8, len(body)):])
				if hi >= 0xdc00 || !ok || !bytes.HasPrefix(body[i+6:], []byte(`\u`)) || lo < 0xdc00 || lo > 0xdfff {
					return i
				}
				i += 12
				continue
			}
		}
		i += size
	}
	return -1
}

func hex4(b []byte) (uint16, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return uint16(n), err == nil
}

// jsonLevel is an object or array jsonPath is in.
type jsonLevel struct {
	array bool
	index int
	key   string
	// wantKey is set in an object when the next string is a key.
	wantKey bool
}

// valueDone moves past a value of the level.
func (l *jsonLevel) valueDone() {
	if l.array {
		l.index++
	} else {
		l.wantKey = true
	}
}

// jsonPath is the path (e.g. "identify.vornamen" or "set[2].value") of the
// key or value that holds the byte at offset in a JSON body; "" for the
// top level.
func jsonPath(body []byte, offset int) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	var stack []*jsonLevel
	path := func() string {
		var b strings.Builder
		for _, l := range stack {
			switch {
			case l.array:
				b.WriteString("[" + strconv.Itoa(l.index) + "]")
			case l.key != "":
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(l.key)
			}
		}
		return b.String()
	}
	for {
		start := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return path()
		}
		here := offset >= start && offset < int(dec.InputOffset())
		var top *jsonLevel
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch {
		case tok == json.Delim('{') || tok == json.Delim('['):
			if here {
				return path()
			}
			stack = append(stack, &jsonLevel{array: tok == json.Delim('['), wantKey: tok == json.Delim('{')})
		case tok == json.Delim('}') || tok == json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				stack[len(stack)-1].valueDone()
			}
		case top != nil && top.wantKey:
			top.key, top.wantKey = tok.(string), false
			if here {
				return path()
			}
		default:
			if here {
				return path()
			}
			if top != nil {
				top.valueDone()
			}
		}
	}
}
