package xmlsafe

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// Parse reads one document from r and returns its root element.
func Parse(r io.Reader, opt Options) (*Element, error) {
	doc, err := ParseDocument(r, opt)
	if err != nil {
		return nil, err
	}
	return doc.Root, nil
}

// ParseDocument reads one document from r.
//
// A *bytes.Reader, *bytes.Buffer or *strings.Reader within the size limit
// is taken whole; any other reader is read in windows, so that the text of
// an element given to Options.Stream is never held in full.
func ParseDocument(r io.Reader, opt Options) (*Document, error) {
	p := newParser(opt)
	defer p.release()
	return p.parse(r)
}

func (p *parser) parse(r io.Reader) (*Document, error) {
	if err := p.load(r); err != nil {
		return nil, err
	}
	if err := p.run(); err != nil {
		return nil, err
	}
	doc := p.doc
	return &doc, nil
}

// scratchPool keeps the parser's working stacks between parses; the tree
// itself is never shared.
var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// scratch is the part of the parser state that only lives during a parse.
type scratch struct {
	stack    []frame
	bindings []binding // namespace declarations of the open elements
	kids     []*Element
	content  []Node // content of the open elements (Options.Preserve)
	attrs    []rawAttr
	buf      []byte
	readBuf  []byte
	pending  []byte // text cut at the end of a window
}

func newParser(opt Options) *parser {
	arena := opt.Arena
	if arena == nil {
		arena = new(Arena) // the tree's own, left to the garbage collector
	}
	return &parser{lim: opt.Limits.withDefaults(), opt: opt, arena: arena, line: 1, readSize: 64 << 10, estimate: 128, scratch: scratchPool.Get().(*scratch)}
}

// release returns the working stacks to the pool, cleared of every
// reference into the tree.
func (p *parser) release() {
	s := p.scratch
	full := s.stack[:cap(s.stack)]
	for i, f := range full {
		full[i] = frame{text: f.text[:0]}
	}
	clear(s.kids[:cap(s.kids)])
	clear(s.content[:cap(s.content)])
	clear(s.attrs[:cap(s.attrs)])
	s.pending = s.pending[:0]
	s.stack, s.bindings, s.kids, s.content, s.attrs = s.stack[:0], s.bindings[:0], s.kids[:0], s.content[:0], s.attrs[:0]
	clear(s.bindings[:cap(s.bindings)])
	p.scratch = nil
	scratchPool.Put(s)
}

// errMore is returned by a token scanner that ran off the end of the
// window while more input may follow; the token is scanned again after
// the window was refilled. Scanners have no side effects before they
// return it.
var errMore = errors.New("xmlsafe: more input needed")

// parser is the tokenizer and the tree builder in one. The input is held
// as a string window (the whole input when it is known in advance), so
// names, attribute values and text without references are substrings of
// it rather than allocations of their own.
type parser struct {
	lim Limits
	opt Options
	doc Document

	src      string    // input window
	base     int64     // input offset of src[0]
	pos      int       // next unread byte of src
	r        io.Reader // nil once src ends where the input ends
	read     int64     // bytes read from r
	readSize int       // least bytes to read per refill
	line     int       // line number at linePos
	linePos  int
	declAt   int // the offset where an XML declaration may stand (after a BOM)

	*scratch
	elements int
	estimate int // elements expected, to size the arenas

	// Allocation arenas: slices for the tree are carved from them, and
	// they come from arena.
	arena     *Arena
	slab      []Element
	elArena   []*Element
	nodeArena []Node
	attrArena []xml.Attr
	strArena  []string
	space     [64]Node // boxed white-space text nodes by length
}

// frame is an open element.
type frame struct {
	el      *Element
	sink    io.Writer
	textLen int64
	// marks into kids, content and bindings where the element's own begin
	kids, content, bindings int
	// text collects the character data when it comes in more than one
	// piece; first holds a single piece.
	first string
	parts int
	text  []byte
}

type binding struct{ prefix, uri string }

type rawAttr struct {
	qname, value string
	at           int
}

const xmlnsNamespace = "http://www.w3.org/2000/xmlns/"

// load takes in-memory input whole and prepares windowed reading of the rest.
func (p *parser) load(r io.Reader) error {
	n := -1
	switch t := r.(type) {
	case *bytes.Reader:
		n = t.Len()
	case *bytes.Buffer:
		n = t.Len()
	case *strings.Reader:
		n = t.Len()
	}
	if n >= 0 && int64(n) <= p.lim.MaxBytes {
		var b strings.Builder
		b.Grow(n)
		if _, err := io.Copy(&b, r); err != nil {
			return fmt.Errorf("xmlsafe: reading: %w", err)
		}
		p.src = b.String()
		// Every element takes a start tag and, mostly, an end tag.
		p.estimate = strings.Count(p.src, "<")/2 + 1
		return nil
	}
	p.r = r
	for len(p.src) < 3 && p.r != nil {
		if err := p.fill(0); err != nil {
			return err
		}
	}
	// The first window is often the whole document (a SOAP request read
	// from its HTTP body): size the arenas by it rather than by a guess,
	// which for a 30-element envelope allocated and cleared four times the
	// elements it needed. A document that goes on gets at least the guess.
	if n := strings.Count(p.src, "<")/2 + 1; p.r == nil || n > p.estimate {
		p.estimate = n
	}
	return nil
}

// fill reads more input into the window, keeping src[keep:].
func (p *parser) fill(keep int) error {
	p.lineAt(keep)
	want := max(p.readSize, len(p.src)-keep)
	if rest := p.lim.MaxBytes + 1 - p.read; int64(want) > rest {
		want = int(rest)
	}
	if cap(p.readBuf) < want {
		p.readBuf = make([]byte, want)
	}
	n, err := io.ReadFull(p.r, p.readBuf[:want])
	p.read += int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		p.r = nil
	case err != nil:
		return fmt.Errorf("xmlsafe: line %d: reading: %w", p.lineAt(len(p.src)), err)
	}
	if p.read > p.lim.MaxBytes {
		return &LimitError{Limit: "size", Max: p.lim.MaxBytes, Line: p.lineAt(len(p.src))}
	}
	p.src = p.src[keep:] + string(p.readBuf[:n])
	p.base += int64(keep)
	p.pos -= keep
	p.linePos -= keep
	return nil
}

// lineAt returns the line of src[pos].
func (p *parser) lineAt(pos int) int {
	if pos >= p.linePos {
		p.line += strings.Count(p.src[p.linePos:pos], "\n")
		p.linePos = pos
		return p.line
	}
	return p.line - strings.Count(p.src[pos:p.linePos], "\n")
}

func (p *parser) errorf(pos int, format string, args ...any) error {
	return &SyntaxError{Line: p.lineAt(pos), Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) limit(pos int, what string, max int64) error {
	return &LimitError{Limit: what, Max: max, Line: p.lineAt(pos)}
}

// short is the result of a scanner that reached the end of the window:
// errMore while input may follow, else a syntax error.
func (p *parser) short(at int, what string) error {
	if p.r != nil {
		return errMore
	}
	return p.errorf(len(p.src), "unexpected end of document in %s", what)
}

const bom = "\uFEFF"

func (p *parser) run() error {
	if strings.HasPrefix(p.src, bom) {
		p.pos, p.declAt = len(bom), len(bom)
	}
	for {
		at := p.pos
		if at == len(p.src) {
			if p.r == nil {
				return p.finish()
			}
			if err := p.fill(at); err != nil {
				return err
			}
			continue
		}
		var err error
		if p.src[at] == '<' {
			if len(p.pending) > 0 {
				text := string(p.pending)
				p.pending = p.pending[:0]
				if err := p.text(text, at); err != nil {
					return err
				}
			}
			err = p.markup()
		} else {
			err = p.charData()
		}
		if err == errMore {
			p.pos = at
			if err := p.fill(at); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
}

func (p *parser) finish() error {
	if len(p.stack) > 0 {
		el := p.stack[len(p.stack)-1].el
		return p.errorf(len(p.src), "unexpected end of document: <%s> (line %d) is not closed", prefixed(el.Prefix, el.Name.Local), el.Line)
	}
	if p.doc.Root == nil {
		return p.errorf(len(p.src), "no root element")
	}
	return nil
}

func (p *parser) markup() error {
	s := p.src[p.pos:]
	if len(s) < 2 {
		return p.short(p.pos, "markup")
	}
	switch s[1] {
	case '/':
		return p.endTag()
	case '?':
		return p.procInst()
	case '!':
		for _, open := range []string{"<!--", "<![CDATA["} {
			if len(s) < len(open) && strings.HasPrefix(open, s) {
				return p.short(p.pos, "markup")
			}
		}
		switch {
		case strings.HasPrefix(s, "<!--"):
			return p.comment()
		case strings.HasPrefix(s, "<![CDATA["):
			return p.cdata()
		case strings.HasPrefix(s, "<!-"):
			return p.errorf(p.pos, "invalid sequence <!- not part of <!--")
		case strings.HasPrefix(s, "<!["):
			return p.errorf(p.pos, "invalid <![ sequence (only <![CDATA[ is allowed)")
		}
		return ErrDTD
	}
	return p.startTag()
}

// charData handles text up to the next '<' (or a safe cut at the window's
// end).
func (p *parser) charData() error {
	at := p.pos
	s := p.src[at:]
	end := strings.IndexByte(s, '<')
	cut := end < 0 && p.r != nil // the text may go on in the next window
	if end < 0 {
		end = len(s)
		if cut {
			if end = safeCut(s); end == 0 {
				return errMore
			}
		}
	}
	if len(p.stack) == 0 {
		if !isSpace(s[:end]) {
			return p.errorf(at, "text outside the root element")
		}
		p.pos = at + end
		return nil
	}
	text, err := p.decode(s[:end], at, modeText)
	if err != nil {
		return err
	}
	p.pos = at + end
	f := &p.stack[len(p.stack)-1]
	if f.sink == nil && cut {
		// One text node, not one per window.
		if f.textLen+int64(len(p.pending)+len(text)) > p.lim.MaxText {
			return p.limit(at, "text length", p.lim.MaxText)
		}
		p.pending = append(p.pending, text...)
		return nil
	}
	if len(p.pending) > 0 {
		text = string(append(p.pending, text...))
		p.pending = p.pending[:0]
	}
	return p.text(text, at)
}

// safeCut returns how much of the text s at the window's end can be taken
// now: not a reference, a "]]>", a CR LF pair or a UTF-8 sequence that
// may continue in the next window.
func safeCut(s string) int {
	n := len(s)
	if i := strings.LastIndexByte(s, '&'); i >= 0 && strings.IndexByte(s[i:], ';') < 0 {
		n = i
	}
	for n > 0 && (s[n-1] == ']' || s[n-1] == '\r') {
		n--
	}
	i := n - 1
	for i >= 0 && i > n-utf8.UTFMax && s[i]&0xC0 == 0x80 {
		i--
	}
	if i >= 0 && s[i] >= utf8.RuneSelf && !utf8.FullRuneInString(s[i:n]) {
		n = i
	}
	return n
}

// text files a piece of character data with the open element.
func (p *parser) text(t string, at int) error {
	f := &p.stack[len(p.stack)-1]
	if f.sink != nil {
		p.buf = append(p.buf[:0], t...)
		if _, err := f.sink.Write(p.buf); err != nil {
			return fmt.Errorf("xmlsafe: line %d: %w", p.lineAt(at), err)
		}
		return nil
	}
	if t == "" {
		return nil
	}
	f.textLen += int64(len(t))
	if f.textLen > p.lim.MaxText {
		return p.limit(at, "text length", p.lim.MaxText)
	}
	switch f.parts++; f.parts {
	case 1:
		f.first = t
	case 2:
		f.text = append(append(f.text[:0], f.first...), t...)
	default:
		f.text = append(f.text, t...)
	}
	if p.opt.Preserve {
		p.content = append(p.content, p.charNode(t))
	}
	return nil
}

// charNode boxes a text node, sharing the boxes of short white space
// (indentation repeats throughout a document).
func (p *parser) charNode(t string) Node {
	if len(t) >= len(p.space) || !isSpace(t) {
		return CharData(t)
	}
	if n, ok := p.space[len(t)].(CharData); ok && string(n) == t {
		return n
	}
	n := Node(CharData(t))
	p.space[len(t)] = n
	return n
}

// misc files a comment or processing instruction where it occurs.
func (p *parser) misc(n Node) {
	switch {
	case !p.opt.Preserve:
	case len(p.stack) > 0:
		p.content = append(p.content, n)
	case p.doc.Root == nil:
		p.doc.Prolog = append(p.doc.Prolog, n)
	default:
		p.doc.Epilog = append(p.doc.Epilog, n)
	}
}

func (p *parser) comment() error {
	at := p.pos
	i := at + len("<!--")
	k := strings.Index(p.src[i:], "--")
	if k < 0 {
		return p.short(at, "a comment")
	}
	k += i
	if k+2 >= len(p.src) {
		return p.short(at, "a comment")
	}
	if p.src[k+2] != '>' {
		return p.errorf(k, `invalid sequence "--" not allowed in comments`)
	}
	body, err := p.decode(p.src[i:k], i, modeRaw)
	if err != nil {
		return err
	}
	p.pos = k + 3
	p.misc(Comment(body))
	return nil
}

func (p *parser) cdata() error {
	at := p.pos
	i := at + len("<![CDATA[")
	k := strings.Index(p.src[i:], "]]>")
	if k < 0 {
		return p.short(at, "a CDATA section")
	}
	k += i
	if len(p.stack) == 0 {
		return p.errorf(at, "a CDATA section outside the root element")
	}
	text, err := p.decode(p.src[i:k], i, modeRaw)
	if err != nil {
		return err
	}
	p.pos = k + 3
	return p.text(text, at)
}

func (p *parser) procInst() error {
	at := p.pos
	i := at + 2
	ne, err := p.name(i)
	if err != nil {
		return err
	}
	if ne == i {
		return p.errorf(at, "expected target name after <?")
	}
	target := p.src[i:ne]
	k := strings.Index(p.src[ne:], "?>")
	if k < 0 {
		return p.short(at, "a processing instruction")
	}
	k += ne
	j := ne
	if k > ne {
		if !isSpaceByte(p.src[ne]) {
			return p.errorf(ne, "expected white space after the processing instruction target %q", target)
		}
		j = skipSpace(p.src, ne)
	}
	inst, err := p.decode(p.src[j:k], j, modeRaw)
	if err != nil {
		return err
	}
	if strings.EqualFold(target, "xml") {
		if target != "xml" || p.base+int64(at) != int64(p.declAt) {
			return p.errorf(at, "the processing instruction target %q is reserved; an XML declaration may only stand at the very start", target)
		}
		if err := p.xmlDecl(inst, at); err != nil {
			return err
		}
		p.pos = k + 2
		return nil
	}
	p.pos = k + 2
	p.misc(ProcInst{Target: target, Inst: inst})
	return nil
}

// xmlDecl checks the XML declaration: version 1.0, UTF-8 if an encoding
// is named.
func (p *parser) xmlDecl(s string, at int) error {
	var names []string
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return p.errorf(at, "malformed XML declaration")
		}
		name := strings.TrimRight(s[:eq], " \t\r\n")
		rest := strings.TrimLeft(s[eq+1:], " \t\r\n")
		if rest == "" || (rest[0] != '"' && rest[0] != '\'') {
			return p.errorf(at, "malformed XML declaration: %s needs a quoted value", name)
		}
		end := strings.IndexByte(rest[1:], rest[0])
		if end < 0 {
			return p.errorf(at, "malformed XML declaration: unterminated value of %s", name)
		}
		value := rest[1 : 1+end]
		s = rest[2+end:]
		if s != "" && !isSpaceByte(s[0]) {
			return p.errorf(at, "malformed XML declaration: no white space after %s", name)
		}
		s = strings.TrimLeft(s, " \t\r\n")
		names = append(names, name)
		switch name {
		case "version":
			if value != "1.0" {
				return p.errorf(at, "unsupported XML version %q in the XML declaration; only 1.0 is supported", value)
			}
		case "encoding":
			if !strings.EqualFold(value, "utf-8") {
				return p.errorf(at, "the XML declaration names the encoding %q; only UTF-8 is accepted", value)
			}
		case "standalone":
			if value != "yes" && value != "no" {
				return p.errorf(at, "malformed XML declaration: standalone=%q", value)
			}
		default:
			return p.errorf(at, "malformed XML declaration: unknown pseudo-attribute %q", name)
		}
	}
	if order := strings.Join(names, " "); len(names) == 0 || names[0] != "version" ||
		(order != "version" && order != "version encoding" && order != "version standalone" && order != "version encoding standalone") {
		return p.errorf(at, "malformed XML declaration: want version, then optionally encoding and standalone")
	}
	return nil
}

func (p *parser) startTag() error {
	s, at := p.src, p.pos
	i := at + 1
	ne, err := p.name(i)
	if err != nil {
		return err
	}
	if ne == i {
		if ne >= len(s) {
			return p.short(at, "a start tag")
		}
		return p.errorf(at, "expected element name after <")
	}
	qname := s[i:ne]
	attrs := p.attrs[:0]
	empty := false
	j := ne
	for {
		k := skipSpace(s, j)
		if k >= len(s) {
			return p.short(at, "a start tag")
		}
		if c := s[k]; c == '>' || c == '/' {
			if c == '/' {
				if k+1 >= len(s) {
					return p.short(at, "a start tag")
				}
				if s[k+1] != '>' {
					return p.errorf(k, "expected /> in element")
				}
				empty, k = true, k+1
			}
			j = k + 1
			break
		}
		if k == j {
			return p.errorf(k, "attributes of <%s> must be separated by white space", qname)
		}
		an, err := p.name(k)
		if err != nil {
			return err
		}
		if an == k {
			return p.errorf(k, "expected attribute name in element <%s>", qname)
		}
		e := skipSpace(s, an)
		if e >= len(s) {
			return p.short(at, "a start tag")
		}
		if s[e] != '=' {
			return p.errorf(e, "attribute name %s without = in element", s[k:an])
		}
		q := skipSpace(s, e+1)
		if q >= len(s) {
			return p.short(at, "a start tag")
		}
		if s[q] != '"' && s[q] != '\'' {
			return p.errorf(q, "unquoted or missing attribute value in element")
		}
		end := strings.IndexByte(s[q+1:], s[q])
		if end < 0 {
			return p.short(at, "an attribute value")
		}
		end += q + 1
		if len(attrs) >= p.lim.MaxAttrs {
			return p.limit(k, "attributes", int64(p.lim.MaxAttrs))
		}
		value, err := p.decode(s[q+1:end], q+1, modeAttr)
		if err != nil {
			return err
		}
		attrs = append(attrs, rawAttr{qname: s[k:an], value: value, at: k})
		j = end + 1
	}
	p.attrs = attrs
	p.pos = j
	return p.open(qname, at, j, empty)
}

// split splits a QName into prefix and local name.
func (p *parser) split(qname string, at int) (prefix, local string, err error) {
	c := strings.IndexByte(qname, ':')
	if c < 0 {
		return "", qname, nil
	}
	prefix, local = qname[:c], qname[c+1:]
	if prefix == "" || local == "" || strings.IndexByte(local, ':') >= 0 || !isNameStart(local) {
		return "", "", p.errorf(at, "%q is not a valid qualified name", qname)
	}
	return prefix, local, nil
}

// lookup returns the namespace bound to prefix among the open elements'
// declarations.
func (p *parser) lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return XMLNamespace, true
	}
	for i := len(p.bindings) - 1; i >= 0; i-- {
		if p.bindings[i].prefix == prefix {
			return p.bindings[i].uri, true
		}
	}
	return "", prefix == ""
}

// open builds the element of a complete start tag src[at:inner].
func (p *parser) open(qname string, at, inner int, empty bool) error {
	if p.doc.Root != nil && len(p.stack) == 0 {
		return p.errorf(at, "more than one root element")
	}
	prefix, local, err := p.split(qname, at)
	if err != nil {
		return err
	}
	p.elements++
	switch {
	case p.elements > p.lim.MaxNodes:
		return p.limit(at, "elements", int64(p.lim.MaxNodes))
	case len(p.stack)+1 > p.lim.MaxDepth:
		return p.limit(at, "depth", int64(p.lim.MaxDepth))
	case len(prefix)+len(local) > p.lim.MaxNameLen:
		return p.limit(at, "name length", int64(p.lim.MaxNameLen))
	}
	if len(p.slab) == 0 {
		p.slab = lend(&p.arena.els, chunk(1, p.estimate-p.elements, 1024))
	}
	el := &p.slab[0]
	p.slab = p.slab[1:]
	el.Prefix, el.Name.Local, el.Line = prefix, local, p.lineAt(at)
	el.Start, el.Inner = p.base+int64(at), p.base+int64(inner)
	if len(p.stack) > 0 {
		el.Parent = p.stack[len(p.stack)-1].el
	}

	// Namespace declarations first: they apply to the element's own name
	// and attributes.
	bindMark := len(p.bindings)
	nattr := 0
	for _, a := range p.attrs {
		ap, al, err := p.split(a.qname, a.at)
		if err != nil {
			return err
		}
		if len(ap)+len(al) > p.lim.MaxNameLen {
			return p.limit(a.at, "name length", int64(p.lim.MaxNameLen))
		}
		var decl string
		switch {
		case ap == "" && al == "xmlns":
		case ap == "xmlns":
			decl = al
			switch {
			case a.value == "":
				return p.errorf(a.at, "the prefix %q cannot be undeclared", al)
			case al == "xmlns":
				return p.errorf(a.at, "the prefix xmlns cannot be declared")
			case (al == "xml") != (a.value == XMLNamespace):
				return p.errorf(a.at, "the prefix xml and the namespace %s belong to each other only", XMLNamespace)
			}
		default:
			nattr++
			continue
		}
		if a.value == xmlnsNamespace || (decl == "" && a.value == XMLNamespace) {
			return p.errorf(a.at, "the namespace %s cannot be declared", a.value)
		}
		for _, b := range p.bindings[bindMark:] {
			if b.prefix == decl {
				return p.errorf(a.at, "attribute %s given twice", a.qname)
			}
		}
		p.bindings = append(p.bindings, binding{decl, a.value})
	}
	if n := len(p.bindings) - bindMark; n > 0 {
		el.NS = p.carveAttrs(n)
		for i, b := range p.bindings[bindMark:] {
			el.NS[i] = xml.Attr{Name: xml.Name{Local: b.prefix}, Value: b.uri}
		}
	}
	space, ok := p.lookup(prefix)
	if !ok {
		return p.errorf(at, "undeclared namespace prefix %q", prefix)
	}
	el.Name.Space = space
	if nattr > 0 {
		el.Attr = p.carveAttrs(nattr)[:0]
		el.AttrPrefix = p.carveStrings(nattr)[:0]
		for _, a := range p.attrs {
			ap, al, _ := p.split(a.qname, a.at)
			if ap == "xmlns" || (ap == "" && al == "xmlns") {
				continue
			}
			name := xml.Name{Local: al}
			if ap != "" {
				if name.Space, ok = p.lookup(ap); !ok || name.Space == "" {
					return p.errorf(a.at, "undeclared namespace prefix %q", ap)
				}
			}
			for _, prev := range el.Attr {
				if prev.Name == name {
					return p.errorf(a.at, "attribute %s given twice", a.qname)
				}
			}
			el.Attr = append(el.Attr, xml.Attr{Name: name, Value: a.value})
			el.AttrPrefix = append(el.AttrPrefix, ap)
		}
	}

	if el.Parent != nil {
		p.kids = append(p.kids, el)
		if p.opt.Preserve {
			p.content = append(p.content, el)
		}
	} else {
		p.doc.Root = el
	}
	var sink io.Writer
	if p.opt.Stream != nil {
		sink = p.opt.Stream(el, len(p.stack))
	}
	n := len(p.stack)
	if n < cap(p.stack) {
		p.stack = p.stack[:n+1]
	} else {
		p.stack = append(p.stack, frame{})
	}
	f := &p.stack[n]
	*f = frame{el: el, sink: sink, kids: len(p.kids), content: len(p.content), bindings: bindMark, text: f.text[:0]}
	if empty {
		p.close(p.base + int64(inner))
	}
	return nil
}

func (p *parser) endTag() error {
	s, at := p.src, p.pos
	i := at + 2
	ne, err := p.name(i)
	if err != nil {
		return err
	}
	if ne == i {
		if ne >= len(s) {
			return p.short(at, "an end tag")
		}
		return p.errorf(at, "expected element name after </")
	}
	k := skipSpace(s, ne)
	if k >= len(s) {
		return p.short(at, "an end tag")
	}
	qname := s[i:ne]
	if s[k] != '>' {
		return p.errorf(k, "invalid characters between </%s and >", qname)
	}
	if len(p.stack) == 0 {
		return p.errorf(at, "end tag </%s> without a start tag", qname)
	}
	el := p.stack[len(p.stack)-1].el
	if !isQName(qname, el.Prefix, el.Name.Local) {
		return p.errorf(at, "element <%s> closed by </%s>", prefixed(el.Prefix, el.Name.Local), qname)
	}
	p.pos = k + 1
	p.close(p.base + int64(k+1))
	return nil
}

func isQName(qname, prefix, local string) bool {
	if prefix == "" {
		return qname == local
	}
	return len(qname) == len(prefix)+1+len(local) && qname[len(prefix)] == ':' &&
		qname[:len(prefix)] == prefix && qname[len(prefix)+1:] == local
}

// close ends the innermost open element at the input offset end.
func (p *parser) close(end int64) {
	f := &p.stack[len(p.stack)-1]
	el := f.el
	switch f.parts {
	case 0:
	case 1:
		el.Text = f.first
	default:
		el.Text = string(f.text)
	}
	if n := len(p.kids) - f.kids; n > 0 {
		el.Children = p.carveElements(n)
		copy(el.Children, p.kids[f.kids:])
		// Indentation between child elements is not data.
		if strings.TrimSpace(el.Text) == "" {
			el.Text = ""
		}
	}
	if n := len(p.content) - f.content; n > 0 {
		el.Nodes = p.carveNodes(n)
		copy(el.Nodes, p.content[f.content:])
		clear(p.content[f.content:])
	}
	el.End = end
	p.kids, p.content, p.bindings = p.kids[:f.kids], p.content[:f.content], p.bindings[:f.bindings]
	f.el, f.sink, f.first = nil, nil, ""
	p.stack = p.stack[:len(p.stack)-1]
}

// The carve functions hand out exact-size slices (capacity included, so
// an append by the caller cannot run into a neighbour) from shared arenas.

func (p *parser) carveElements(n int) []*Element {
	if len(p.elArena) < n {
		p.elArena = lend(&p.arena.ptrs, chunk(n, p.estimate-p.elements, 1024))
	}
	s := p.elArena[:n:n]
	p.elArena = p.elArena[n:]
	return s
}

func (p *parser) carveNodes(n int) []Node {
	if len(p.nodeArena) < n {
		p.nodeArena = lend(&p.arena.nds, chunk(n, 2*(p.estimate-p.elements), 2048))
	}
	s := p.nodeArena[:n:n]
	p.nodeArena = p.nodeArena[n:]
	return s
}

func (p *parser) carveAttrs(n int) []xml.Attr {
	if len(p.attrArena) < n {
		p.attrArena = lend(&p.arena.atts, chunk(n, (p.estimate-p.elements)/2, 256))
	}
	s := p.attrArena[:n:n]
	p.attrArena = p.attrArena[n:]
	return s
}

func (p *parser) carveStrings(n int) []string {
	if len(p.strArena) < n {
		p.strArena = lend(&p.arena.strs, chunk(n, (p.estimate-p.elements)/2, 256))
	}
	s := p.strArena[:n:n]
	p.strArena = p.strArena[n:]
	return s
}

// chunk is the size of a new arena chunk: n at least, else what the rest
// of the document is expected to need, between 16 and most.
func chunk(n, expected, most int) int {
	return max(n, min(max(expected, 16), most))
}
