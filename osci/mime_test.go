package osci_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/xmlsafe"
)

// The Governikus OSCI 1.2 samples; CI always has them beside the checkout,
// so their absence fails the test.

// TestMIMESamples reads every Governikus sample: the root part is the SOAP
// envelope, the attachments are found by Content-ID.
func TestMIMESamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(oscitest.Samples, "*.mime"))
	if err != nil || len(files) != 17 {
		t.Fatalf("want the 17 OSCI samples in %s, found %d (%v)", oscitest.Samples, len(files), err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			msg, err := osci.ReadMIME(f, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if msg.MediaType != "multipart/related" || msg.Params["type"] != "text/xml" || msg.Header.Get("MIME-Version") != "1.0" {
				t.Errorf("media type %q, params %v", msg.MediaType, msg.Params)
			}
			root := msg.Root()
			if root == nil || root.ContentID != "osci@message" || root.Header.Get("Content-Type") != "text/xml; charset=UTF-8" {
				t.Fatalf("root part %+v", root)
			}
			env, err := xmlsafe.Parse(bytes.NewReader(root.Body), xmlsafe.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if env.Name.Space != "http://schemas.xmlsoap.org/soap/envelope/" || env.Name.Local != "Envelope" {
				t.Errorf("root part is %v", env.Name)
			}
			// (The transport-encrypted envelopes end with a CRLF of their own
			// before the delimiter's CRLF; it stays part of the body.)
			if !bytes.HasSuffix(bytes.TrimRight(root.Body, "\r\n"), []byte("</soap:Envelope>")) {
				t.Errorf("root part does not end with the envelope: %q", root.Body[max(0, len(root.Body)-30):])
			}
			var ids []string
			for _, p := range msg.Parts {
				ids = append(ids, p.ContentID)
			}
			want := "osci@message"
			switch {
			case strings.HasSuffix(name, ".transport-encrypted.mime"):
				want = "osci@message osci_enc"
			case strings.HasPrefix(name, "03-"):
				want = "osci@message enc_test.txt test.txt"
			}
			if got := strings.Join(ids, " "); got != want {
				t.Errorf("parts %q, want %q", got, want)
			}
		})
	}

	// 03-StoreDelivery: the attachments, exactly as on the wire.
	data, err := os.ReadFile(filepath.Join(oscitest.Samples, "03-StoreDelivery.plain.mime"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := osci.ParseMIME(data)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := msg.Resolve("cid:test.txt")
	if err != nil || string(plain) != "Any unencrypted attachment data." {
		t.Errorf("cid:test.txt = %q, %v", plain, err)
	}
	enc := msg.Part("<enc_test.txt>")
	if enc == nil || len(enc.Body) != 58 || !bytes.Equal(data[enc.Offset:enc.Offset+58], enc.Raw) {
		t.Errorf("enc_test.txt part %+v", enc)
	}
	if _, err := msg.Resolve("cid:missing"); err == nil || !strings.Contains(err.Error(), "no MIME part with Content-ID <missing>") {
		t.Errorf("missing part: %v", err)
	}
	if _, err := msg.Resolve("#body"); err == nil {
		t.Error("a same-document reference resolved as a MIME part")
	}
}

// TestMIMEForms covers what the samples do not: LF line ends, preamble,
// folded headers, transfer encodings, the start parameter, escaped cid URIs.
func TestMIMEForms(t *testing.T) {
	msg, err := osci.ParseMIME([]byte("MIME-Version: 1.0\n" +
		"Content-Type: multipart/related;\n boundary=\"b1\"; start=\"<second>\"\n\n" +
		"preamble text\n--b1\nContent-ID: <first>\nContent-Transfer-Encoding: base64\n\nSGFs\nbG8=\n" +
		"--b1  \nContent-ID: <sec ond>\nContent-Transfer-Encoding: quoted-printable\n\nZeile=3D1=\n weiter\n" +
		"--b1\nContent-ID: <second>\n\n<root/>\n--b1--\nepilogue"))
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Parts) != 3 || msg.Root().ContentID != "second" || string(msg.Root().Body) != "<root/>" {
		t.Fatalf("parts %d, root %+v", len(msg.Parts), msg.Root())
	}
	if b, err := msg.Resolve("cid:first"); err != nil || string(b) != "Hallo" {
		t.Errorf("base64 part %q %v", b, err)
	}
	if b, err := msg.Resolve("cid:sec%20ond"); err != nil || string(b) != "Zeile=1 weiter" {
		t.Errorf("quoted-printable part %q %v", b, err)
	}
}

// TestMIMEBadInput: each malformed message is refused with a reason.
func TestMIMEBadInput(t *testing.T) {
	head := "MIME-Version: 1.0\r\nContent-Type: Multipart/Related; boundary=b/1\r\n\r\n"
	manyParts := head + strings.Repeat("--b/1\r\n\r\nx\r\n", osci.MaxMIMEParts+1) + "--b/1--\r\n"
	cases := []struct{ name, msg, reason string }{
		{"no headers", "--b/1\r\n\r\nx\r\n--b/1--\r\n", "not \"Name: value\""},
		{"no Content-Type", "MIME-Version: 1.0\r\n\r\n--b\r\n", "no Content-Type"},
		{"not multipart", "Content-Type: text/xml\r\n\r\n<a/>", "not multipart"},
		{"no boundary", "Content-Type: multipart/related; type=text/xml\r\n\r\n", "no usable boundary"},
		{"no header end", "Content-Type: multipart/related; boundary=b", "does not end with an empty line"},
		{"no part", head + "nothing here\r\n", "no part starts with the boundary"},
		{"truncated", head + "--b/1\r\nContent-ID: <a>\r\n\r\n<soap:Envelope", "not closed by the boundary"},
		{"part without header end", head + "--b/1\r\nContent-ID: <a>", "does not end with an empty line"},
		{"garbage after boundary", head + "--b/1xyz\r\n\r\nx\r\n--b/1--", "not followed by a line end"},
		{"unknown transfer encoding", head + "--b/1\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nx\r\n--b/1--\r\n", "x-uuencode"},
		{"bad base64", head + "--b/1\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b/1--\r\n", "base64"},
		{"huge header", "X-Big: " + strings.Repeat("a", osci.MaxMIMEHeaderBytes+10) + "\r\n\r\n", "exceeds"},
		{"too many header fields", strings.Repeat("X-A: 1\r\n", osci.MaxMIMEHeaderFields+1) + "\r\n", "more than"},
		{"too many parts", manyParts, "more than 1000 parts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := osci.ParseMIME([]byte(c.msg))
			if !errors.Is(err, osci.ErrMIME) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("want ErrMIME mentioning %q, got %v", c.reason, err)
			}
		})
	}
	if _, err := osci.ReadMIME(strings.NewReader(manyParts), 100); !errors.Is(err, osci.ErrMIME) || !strings.Contains(err.Error(), "limit of 100 bytes") {
		t.Errorf("size limit: %v", err)
	}
}

// TestScanMIMESamples reads every Governikus sample as a stream: the root
// part is held and equal to what ParseMIME reads; every other part streams
// past with the size of its decoded body, and Open reads the same bytes
// again from a new stream.
func TestScanMIMESamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(oscitest.Samples, "*.mime"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no OSCI samples in %s (%v)", oscitest.Samples, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := osci.ParseMIME(data)
			if err != nil {
				t.Fatal(err)
			}
			opens := 0
			streamed, err := osci.ScanMIME(func() (io.Reader, error) { opens++; return bytes.NewReader(data), nil }, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(streamed.Parts) != len(whole.Parts) || !bytes.Equal(streamed.Root().Body, whole.Root().Body) {
				t.Fatalf("%d parts (want %d), root equal: %v", len(streamed.Parts), len(whole.Parts), bytes.Equal(streamed.Root().Body, whole.Root().Body))
			}
			for i, p := range streamed.Parts[1:] {
				want := whole.Parts[i+1]
				if p.ContentID != want.ContentID || p.Body != nil || p.Size != int64(len(want.Body)) {
					t.Errorf("part <%s>: held %v, size %d, want <%s> of %d bytes", p.ContentID, p.Body != nil, p.Size, want.ContentID, len(want.Body))
				}
				r, err := streamed.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want.Body) {
					t.Errorf("part <%s> read again: %d bytes (%v), want %d", p.ContentID, len(got), err, len(want.Body))
				}
			}
			if opens != len(streamed.Parts) {
				t.Errorf("the stream was opened %d times, want once and once per part read again (%d)", opens, len(streamed.Parts))
			}
		})
	}
}

// TestScanMIMERootBound: a root part over the bound is refused with 9904
// before anything else is read.
func TestScanMIMERootBound(t *testing.T) {
	data := oscitest.Sample(t, "03-StoreDelivery.plain.mime")
	_, err := osci.ScanMIME(func() (io.Reader, error) { return bytes.NewReader(data), nil }, 100)
	var oe *osci.Error
	if !errors.As(err, &oe) || oe.Code != osci.CodeMessageTooLarge {
		t.Errorf("got %v, want 9904", err)
	}
}
