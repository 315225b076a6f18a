package osci_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/sealing"
)

const ns2017 = `xmlns:osci2017="http://xoev.de/transport/osci12/7"`

// features is the FeatureDescription header block a partial order carries.
const features = `<osci2017:FeatureDescription ` + ns2017 + ` Id="featuredescription"><osci2017:SupportedFeatures><osci2017:Feature Key="PartialMessages" Version="1.0"></osci2017:Feature></osci2017:SupportedFeatures></osci2017:FeatureDescription>`

// wholeStoreDelivery is the storeDelivery a client cuts into chunks: signed,
// not transport-encrypted (each chunk is), its ControlBlock of no dialog.
func (c *testClient) wholeStoreDelivery(t testing.TB, messageID, subject, text string, attachment []byte, reader *x509.Certificate) []byte {
	whole := *c
	whole.plain, whole.conversation, whole.lastChallenge = true, "", ""
	// Its own MIME boundary, not the one of the requests its chunks go in.
	return bytes.ReplaceAll(whole.storeRequest(t, messageID, subject, text, attachment, reader), []byte("test-boundary-4711"), []byte("whole-boundary-0815"))
}

// chunkOrder is a partialStoreDelivery's order block.
func chunkOrder(messageID string, no, sizeKB, total int, messageKB int64) string {
	return `<osci:QualityOfTimestamp Id="qualityoftimestamp_creation" Quality="plain" Service="creation" ` + next + `></osci:QualityOfTimestamp>` +
		`<osci2017:partialStoreDelivery ` + ns2017 + ` Id="partialstoredelivery" ` + next + `><osci:MessageId>` + base64.StdEncoding.EncodeToString([]byte(messageID+"_Partial")) +
		`</osci:MessageId><osci:Subject>in Teilen</osci:Subject><osci2017:ChunkInformation ChunkNumber="` + strconv.Itoa(no) + `" ChunkSize="` + strconv.Itoa(sizeKB) +
		`" TotalChunkNumbers="` + strconv.Itoa(total) + `" TotalMessageSize="` + strconv.FormatInt(messageKB, 10) + `"></osci2017:ChunkInformation></osci2017:partialStoreDelivery>`
}

// chunkRequest is one partialStoreDelivery: the chunk as the attachment of
// its one content.
func (c *testClient) chunkRequest(t testing.TB, order string, chunk []byte, reader *x509.Certificate) []byte {
	withFeatures := *c
	withFeatures.customHeaders = features
	body := `<osci:ContentPackage><osci:ContentContainer Id="ChunkContentContainer"><osci:Content Id="ChunkContent" href="cid:ChunkBlobStoreDelivery"></osci:Content></osci:ContentContainer></osci:ContentPackage>`
	return withFeatures.build(t, order, body, certElement("CipherCertificateAddressee", "addressee_cipher", reader), map[string][]byte{"ChunkBlobStoreDelivery": chunk})
}

// partialStore sends a whole message in chunks of sizeKB and returns the
// answer to the last; after, if given, runs after each chunk's answer.
func (c *testClient) partialStore(t testing.TB, messageID string, whole io.ReaderAt, length int64, sizeKB int, reader *x509.Certificate, after ...func(no int)) *answer {
	t.Helper()
	size := int64(sizeKB) << 10
	total := int((length + size - 1) / size)
	var a *answer
	for no := 1; no <= total; no++ {
		chunk := make([]byte, min(size, length-int64(no-1)*size))
		if _, err := whole.ReadAt(chunk, int64(no-1)*size); err != nil {
			t.Fatal(err)
		}
		a = c.do(t, osci.OrderPartialStoreDelivery, c.chunkRequest(t, chunkOrder(messageID, no, sizeKB, total, length/1024), chunk, reader))
		info := a.env.Root.FindAll(osci.Namespace2017, "ChunkInformation")
		if len(info) != 1 {
			t.Fatalf("chunk %d: no ChunkInformation in the answer (feedback %v)", no, a.feedback)
		}
		received, _ := info[0].Attribute("ReceivedChunks")
		if want := strings.Fields(strings.Repeat("x ", no)); len(strings.Fields(received)) != len(want) {
			t.Errorf("chunk %d: ReceivedChunks %q", no, received)
		}
		for _, f := range after {
			f(no)
		}
	}
	return a
}

// partialFetch collects the next delivery in chunks of sizeKB and returns
// the responseToFetchDelivery they make up, read as an answer.
func (c *testClient) partialFetch(t testing.TB, sizeKB int, after ...func(no int)) *answer {
	t.Helper()
	var whole bytes.Buffer
	c.partialFetchTo(t, sizeKB, &whole, after...)
	return check(t, osci.OrderFetchDelivery, http.StatusOK, whole.Bytes())
}

// partialFetchTo collects the next delivery in chunks of sizeKB, writing
// them to whole, and returns how many there were; after, if given, runs
// after each chunk's answer.
func (c *testClient) partialFetchTo(t testing.TB, sizeKB int, whole io.Writer, after ...func(no int)) int {
	t.Helper()
	withFeatures := *c
	var received []string
	for no, total := 1, 1; no <= total; no++ {
		rec := "-1"
		if len(received) > 0 {
			rec = strings.Join(received, " ")
		}
		order := `<osci2017:partialFetchDelivery ` + ns2017 + ` Id="partialfetchdelivery" ` + next + `><osci2017:ChunkInformation ChunkNumber="` + strconv.Itoa(no) +
			`" ChunkSize="` + strconv.Itoa(sizeKB) + `" ReceivedChunks="` + rec + `"></osci2017:ChunkInformation></osci2017:partialFetchDelivery>`
		withFeatures.customHeaders = features
		withFeatures.conversation, withFeatures.seq, withFeatures.lastChallenge = c.conversation, c.seq, c.lastChallenge
		a := c.do(t, osci.OrderPartialFetchDelivery, withFeatures.build(t, order, "", "", nil))
		info := a.env.Root.FindAll(osci.Namespace2017, "ChunkInformation")
		if len(info) != 1 || a.msg.Part("ChunkBlobFetchDelivery") == nil {
			t.Fatalf("chunk %d: no ChunkInformation or chunk in the answer (feedback %v)", no, a.feedback)
		}
		v, _ := info[0].Attribute("TotalChunkNumbers")
		total, _ = strconv.Atoi(v)
		if _, err := whole.Write(a.msg.Part("ChunkBlobFetchDelivery").Body); err != nil {
			t.Fatal(err)
		}
		received = append(received, strconv.Itoa(no))
		for _, f := range after {
			f(no)
		}
	}
	return len(received)
}

// TestPartialDelivery: alice sends a delivery with a 40 MiB attachment to
// bob in 4 MiB chunks (each transport-encrypted and signed); the last
// chunk's answer carries the delivery's own feedback and process card. bob
// fetches it in chunks of 2 MiB, reassembles the response, checks its
// supplier signature and schema, decrypts the content, verifies alice's
// signature over it and the attachment; his next request confirms the
// reception, which alice's process card shows. Refused chunks (the
// ChunkInformation table) get their 99xx codes and store nothing.
func TestPartialDelivery(t *testing.T) {
	ix := startIntermediary(t)
	bobCipher := oscitest.Certificate(t, "bob_cipher_4096")
	alice, bob := newClient(t, ix, "alice"), newClient(t, ix, "bob")
	attachment := make([]byte, 40<<20+12345)
	r := rand.NewChaCha8([32]byte{7})
	_, _ = r.Read(attachment)

	alice.initDialog(t)
	id := alice.getMessageID(t)
	whole := alice.wholeStoreDelivery(t, id, "Große Meldung", "Inhalt in Teilen", attachment, bobCipher)
	last := alice.partialStore(t, id, bytes.NewReader(whole), int64(len(whole)), 4096, bobCipher)
	if got := strings.Join(last.feedback, " "); got != "0801 0801" {
		t.Errorf("last chunk: feedback (inside, then the chunk's) %v, want 0801 0801", got)
	}
	if last.text("Subject") != "Große Meldung" || last.time("Creation") == "" {
		t.Errorf("last chunk's process card: subject %q creation %q", last.text("Subject"), last.time("Creation"))
	}
	if n := chunksKept(t, ix); n != 0 {
		t.Errorf("%d chunks kept after the delivery was stored", n)
	}
	t.Run("refused chunks", func(t *testing.T) { refusedChunks(t, ix, alice) })
	alice.exitDialog(t)

	bob.initDialog(t)
	early := `<osci2017:partialFetchDelivery ` + ns2017 + ` Id="partialfetchdelivery" ` + next + `><osci2017:ChunkInformation ChunkNumber="2" ChunkSize="2048" ReceivedChunks="-1"></osci2017:ChunkInformation></osci2017:partialFetchDelivery>`
	withFeatures := *bob
	withFeatures.customHeaders = features
	if a := bob.do(t, osci.OrderPartialFetchDelivery, withFeatures.build(t, early, "", "", nil)); strings.Join(a.feedback, " ") != "9901" {
		t.Errorf("chunk 2 before chunk 1: feedback %v, want 9901", a.feedback)
	}
	got := bob.partialFetch(t, 2048)
	if a := got.msg.Part("anlage"); a == nil || !bytes.Equal(a.Body, attachment) {
		t.Fatal("the attachment did not come back as sent")
	}
	if text := opened(t, got, oscitest.Key(t, "bob_cipher_4096"), oscitest.Certificate(t, "alice_signature_4096")); text != "Inhalt in Teilen" {
		t.Errorf("bob read %q", text)
	}
	if got.text("Subject") != "Große Meldung" {
		t.Errorf("the fetched delivery's subject: %q", got.text("Subject"))
	}
	bob.exitDialog(t) // confirms the reception

	alice.initDialog(t)
	if a := alice.fetchProcessCard(t, id); a.time("Forwarding") == "" || a.time("Reception") == "" {
		t.Errorf("process card: forwarding %q reception %q", a.time("Forwarding"), a.time("Reception"))
	}
	alice.exitDialog(t)
	var assemblies int
	err := db.InTenant(t.Context(), ix.Pool, "bremen", func(tx pgx.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT count(*) FROM osci_fetch_assembly`).Scan(&assemblies)
	})
	if err != nil || assemblies != 0 {
		t.Errorf("%d responses in chunks kept after the reception (%v)", assemblies, err)
	}
}

// TestPartialKeyRotation: a rotation of the tenant's data key while a
// delivery waits in chunks, and again while its response is handed out in
// chunks, seals the kept chunks and the kept response under the new key;
// the delivery completes, and the response reassembles, verifies and
// opens as if nothing had happened.
func TestPartialKeyRotation(t *testing.T) {
	// A rotation ends once every node can have seen the new key: soon.
	ttl := sealing.CurrentTTL
	sealing.CurrentTTL = 50 * time.Millisecond
	t.Cleanup(func() { sealing.CurrentTTL = ttl })
	ix := startIntermediary(t)
	bobCipher := oscitest.Certificate(t, "bob_cipher_4096")
	alice, bob := newClient(t, ix, "alice"), newClient(t, ix, "bob")
	attachment := make([]byte, 5<<10)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(attachment)
	// rotate rotates bremen's data key and waits until the rotation is
	// done: the table has rows, all under the new key.
	rotate := func(table string) {
		ctx := t.Context()
		rot, err := ix.Store.RotateKey(ctx, ix.Jobs, "bremen", false)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			rs, err := ix.Store.Rotations(ctx, "bremen")
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) > 0 && rs[0].KeyVersion == rot.KeyVersion && rs[0].FinishedAt != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rotation to key %d has not finished after a minute: %+v", rot.KeyVersion, rs)
			}
		}
		var rows, older int
		err = ix.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE key_version <> $1) FROM `+table, rot.KeyVersion).Scan(&rows, &older)
		if err != nil || rows == 0 || older != 0 {
			t.Fatalf("%s after the rotation to key %d: %d rows, %d under another key (%v)", table, rot.KeyVersion, rows, older, err)
		}
	}
	once := func(table string) func(int) {
		return func(no int) {
			if no == 1 {
				rotate(table)
			}
		}
	}

	alice.initDialog(t)
	id := alice.getMessageID(t)
	whole := alice.wholeStoreDelivery(t, id, "Gedreht", "Inhalt über die Drehung", attachment, bobCipher)
	last := alice.partialStore(t, id, bytes.NewReader(whole), int64(len(whole)), 1, bobCipher, once("osci_chunk"))
	if got := strings.Join(last.feedback, " "); got != "0801 0801" {
		t.Fatalf("last chunk: feedback %v, want 0801 0801", got)
	}
	alice.exitDialog(t)

	bob.initDialog(t)
	got := bob.partialFetch(t, 1, once("osci_fetch_assembly"))
	if a := got.msg.Part("anlage"); a == nil || !bytes.Equal(a.Body, attachment) {
		t.Fatal("the attachment did not come back as sent")
	}
	if text := opened(t, got, oscitest.Key(t, "bob_cipher_4096"), oscitest.Certificate(t, "alice_signature_4096")); text != "Inhalt über die Drehung" {
		t.Errorf("bob read %q", text)
	}
	bob.exitDialog(t)
}

// chunksKept counts the chunks the intermediary holds.
func chunksKept(t testing.TB, ix *intermediary) int {
	var n int
	err := db.InTenant(t.Context(), ix.Pool, "bremen", func(tx pgx.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT count(*) FROM osci_chunk`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// refusedChunks sends chunks that do not fit: each gets its code and
// nothing is kept; a chunk sent twice is refused the second time.
func refusedChunks(t *testing.T, ix *intermediary, alice *testClient) {
	bobCipher := oscitest.Certificate(t, "bob_cipher_4096")
	id := alice.getMessageID(t)
	kib := bytes.Repeat([]byte("k"), 1024)
	for _, c := range []struct {
		name  string
		order string
		chunk []byte
		code  osci.Code
	}{
		{"chunk number beyond the total", chunkOrder(id, 3, 1, 2, 2), kib, osci.CodeChunkNumber},
		{"chunk larger than its ChunkSize", chunkOrder(id, 1, 1, 2, 2), append(kib, 'x'), osci.CodeChunkTooLarge},
		{"chunk smaller than its ChunkSize, not the last", chunkOrder(id, 1, 1, 2, 2), kib[:1000], osci.CodeChunkTooSmall},
		{"ChunkSize above the maximum", chunkOrder(id, 1, osci.MaxChunkKB+1, 2, 2), kib, osci.CodeChunkTooLarge},
		{"more KiB than the chunks hold", chunkOrder(id, 1, 1, 2, 5), kib, osci.CodeChunkInformation},
		{"MessageId not handed out", chunkOrder("erfunden", 1, 1, 2, 2), kib, osci.CodeIllegalMessageID},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := alice.do(t, osci.OrderPartialStoreDelivery, alice.chunkRequest(t, c.order, c.chunk, bobCipher))
			if strings.Join(a.feedback, " ") != string(c.code) {
				t.Errorf("feedback %v, want %s", a.feedback, c.code)
			}
			if n := chunksKept(t, ix); n != 0 {
				t.Errorf("%d chunks kept", n)
			}
		})
	}
	alice.do(t, osci.OrderPartialStoreDelivery, alice.chunkRequest(t, chunkOrder(id, 1, 1, 2, 2), kib, bobCipher))
	for _, c := range []struct {
		name  string
		order string
		code  osci.Code
	}{
		{"the same chunk again", chunkOrder(id, 1, 1, 2, 2), osci.CodeChunkExists},
		{"another total than the chunks before", chunkOrder(id, 2, 1, 3, 2), osci.CodeChunkInformation},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := alice.do(t, osci.OrderPartialStoreDelivery, alice.chunkRequest(t, c.order, kib, bobCipher))
			if strings.Join(a.feedback, " ") != string(c.code) {
				t.Errorf("feedback %v, want %s", a.feedback, c.code)
			}
			if n := chunksKept(t, ix); n != 1 {
				t.Errorf("%d chunks kept, want the first one", n)
			}
		})
	}
	// The second chunk completes a message that is no storeDelivery: the
	// chunk is taken (0801), the message refused inside (9100), nothing
	// stored.
	before := countMessages(t, ix.Node, "bremen")
	a := alice.do(t, osci.OrderPartialStoreDelivery, alice.chunkRequest(t, chunkOrder(id, 2, 1, 2, 2), kib, bobCipher))
	if strings.Join(a.feedback, " ") != "9100 0801" {
		t.Errorf("completing garbage: feedback %v, want 9100 (inside) 0801", a.feedback)
	}
	if n := chunksKept(t, ix); n != 0 || countMessages(t, ix.Node, "bremen") != before {
		t.Errorf("after the refused message: %d chunks, %d messages (before %d)", n, countMessages(t, ix.Node, "bremen"), before)
	}
}
