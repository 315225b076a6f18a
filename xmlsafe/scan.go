package xmlsafe

import (
	"strings"
	"unicode/utf8"
)

// mode is how decode treats a run of characters.
type mode uint8

const (
	// modeText is character data: references resolved, "]]>" refused.
	modeText mode = 1 << iota
	// modeAttr is an attribute value: references resolved, '<' refused,
	// white space normalized as XML 1.0 §3.3.3 asks for CDATA attributes.
	modeAttr
	// modeRaw is the content of a CDATA section, comment or processing
	// instruction: no references.
	modeRaw
)

// special[c]&m != 0 when byte c needs a closer look in mode m; every mode
// looks at CR, control characters and non-ASCII bytes.
var special = func() (t [256]mode) {
	all := modeText | modeAttr | modeRaw
	for c := 0; c < 0x20; c++ {
		if c != '\t' && c != '\n' {
			t[c] = all
		}
	}
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = all
	}
	t['&'] = modeText | modeAttr
	t[']'] = modeText
	t['<'] = modeAttr
	t['\t'] = modeAttr
	t['\n'] = modeAttr
	return t
}()

// decode checks the run s, which starts at src[at], and returns its
// characters after line-end normalization and, by mode, reference
// resolution and attribute-value normalization. Without anything to
// change it returns s itself.
func (p *parser) decode(s string, at int, m mode) (string, error) {
	for i := 0; i < len(s); {
		c := s[i]
		if special[c]&m == 0 {
			i++
			continue
		}
		switch {
		case c >= utf8.RuneSelf:
			size, err := p.checkRune(s, i, at)
			if err != nil {
				return "", err
			}
			i += size
		case c == ']':
			if strings.HasPrefix(s[i:], "]]>") {
				return "", p.errorf(at+i, "unescaped ]]> not in CDATA section")
			}
			i++
		case c == '<':
			return "", p.errorf(at+i, "unescaped < inside an attribute value")
		case c == '&' || c == '\r' || c == '\t' || c == '\n':
			return p.decodeFrom(s, i, at, m)
		default:
			return "", p.errorf(at+i, "illegal character code %U", rune(c))
		}
	}
	return s, nil
}

// decodeFrom is decode for a run that needs changes from s[i] on.
func (p *parser) decodeFrom(s string, i, at int, m mode) (string, error) {
	b := append(p.buf[:0], s[:i]...)
	defer func() { p.buf = b[:0] }()
	for i < len(s) {
		c := s[i]
		if special[c]&m == 0 {
			b = append(b, c)
			i++
			continue
		}
		switch {
		case c >= utf8.RuneSelf:
			size, err := p.checkRune(s, i, at)
			if err != nil {
				return "", err
			}
			b = append(b, s[i:i+size]...)
			i += size
		case c == ']':
			if strings.HasPrefix(s[i:], "]]>") {
				return "", p.errorf(at+i, "unescaped ]]> not in CDATA section")
			}
			b = append(b, c)
			i++
		case c == '<':
			return "", p.errorf(at+i, "unescaped < inside an attribute value")
		case c == '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++ // CR LF is one line end
			}
			c = '\n'
			fallthrough
		case c == '\t' || c == '\n':
			if m == modeAttr {
				c = ' '
			}
			b = append(b, c)
			i++
		case c == '&':
			n, size, err := p.reference(s, i, at)
			if err != nil {
				return "", err
			}
			b = utf8.AppendRune(b, n)
			i += size
		default:
			return "", p.errorf(at+i, "illegal character code %U", rune(c))
		}
	}
	return string(b), nil
}

// checkRune checks the UTF-8 sequence at s[i] and returns its length.
func (p *parser) checkRune(s string, i, at int) (int, error) {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size == 1 {
		return 0, p.errorf(at+i, "invalid UTF-8")
	}
	if !isChar(r) {
		return 0, p.errorf(at+i, "illegal character code %U", r)
	}
	return size, nil
}

var predefined = map[string]rune{"lt": '<', "gt": '>', "amp": '&', "apos": '\'', "quot": '"'}

// reference resolves the entity or character reference at s[i] ('&').
func (p *parser) reference(s string, i, at int) (rune, int, error) {
	end := strings.IndexByte(s[i:], ';')
	if end < 0 {
		return 0, 0, p.errorf(at+i, "invalid character entity %.12s (no semicolon)", s[i:])
	}
	ref := s[i+1 : i+end]
	if r, ok := predefined[ref]; ok {
		return r, end + 1, nil
	}
	if !strings.HasPrefix(ref, "#") {
		return 0, 0, p.errorf(at+i, "invalid character entity &%.40s; (only &lt; &gt; &amp; &apos; &quot; and character references are allowed)", ref)
	}
	digits, base := ref[1:], rune(10)
	if strings.HasPrefix(digits, "x") {
		digits, base = digits[1:], 16
	}
	var n rune
	for j := 0; j < len(digits); j++ {
		d := rune(16)
		switch c := digits[j]; {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		}
		if d >= base {
			n = -1
			break
		}
		if n = n*base + d; n > utf8.MaxRune {
			break
		}
	}
	if digits == "" || n < 0 || !isChar(n) {
		return 0, 0, p.errorf(at+i, "invalid character entity &%.40s;", ref)
	}
	return n, end + 1, nil
}

// isChar reports whether r is an XML 1.0 Char.
func isChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isSpace reports whether s is XML white space only.
func isSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isSpaceByte(s[i]) {
			return false
		}
	}
	return true
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpaceByte(s[i]) {
		i++
	}
	return i
}

// nameByte classifies ASCII: 1 may start a name, 2 may only continue one.
var nameByte = func() (t [utf8.RuneSelf]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = 1, 1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 2
	}
	t['_'], t[':'], t['-'], t['.'] = 1, 1, 2, 2
	return t
}()

// name returns the end of the XML name (XML 1.0 fifth edition) that
// starts at src[i]; i itself when none starts there.
func (p *parser) name(i int) (int, error) {
	s := p.src
	j := i
	for j < len(s) {
		c := s[j]
		if c < utf8.RuneSelf {
			k := nameByte[c]
			if k == 0 || (k == 2 && j == i) {
				break
			}
			j++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[j:])
		if r == utf8.RuneError && size == 1 {
			if p.r != nil && !utf8.FullRuneInString(s[j:]) {
				return 0, errMore
			}
			return 0, p.errorf(j, "invalid UTF-8")
		}
		if !nameStartRune(r) && (j == i || !nameRune(r)) {
			if j == i {
				return i, nil
			}
			return 0, p.errorf(j, "invalid character %U in the name %s", r, s[i:j])
		}
		j += size
	}
	if j == len(s) && p.r != nil {
		return 0, errMore
	}
	return j, nil
}

// isNameStart reports whether s starts with a character that may begin a
// name.
func isNameStart(s string) bool {
	if s == "" {
		return false
	}
	if s[0] < utf8.RuneSelf {
		return nameByte[s[0]] == 1
	}
	r, _ := utf8.DecodeRuneInString(s)
	return nameStartRune(r)
}

// nameStartRune is NameStartChar beyond ASCII.
func nameStartRune(r rune) bool {
	switch {
	case r < 0xC0:
		return r < utf8.RuneSelf && nameByte[r] == 1
	case r <= 0x2FF:
		return r != 0xD7 && r != 0xF7
	case r < 0x370:
		return false
	case r <= 0x1FFF:
		return r != 0x37E
	}
	return r == 0x200C || r == 0x200D ||
		r >= 0x2070 && r <= 0x218F ||
		r >= 0x2C00 && r <= 0x2FEF ||
		r >= 0x3001 && r <= 0xD7FF ||
		r >= 0xF900 && r <= 0xFDCF ||
		r >= 0xFDF0 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0xEFFFF
}

// nameRune is NameChar beyond NameStartChar and ASCII.
func nameRune(r rune) bool {
	return r == 0xB7 || r >= 0x300 && r <= 0x36F || r == 0x203F || r == 0x2040
}
