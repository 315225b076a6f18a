package osci_test

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
)

// processCPU is the CPU time this process spent so far (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStoreDelivery prints what `make bench-osci` reports:
// storeDelivery requests per second (10 KB content: 9 KB signed text
// encrypted to bob and a 1 KB attachment; transport-encrypted to the
// intermediary and signed by alice) from 16 concurrent HTTPS clients, with
// p50/p99 latency and the process's CPU time per delivery (the requests
// are built before the clock starts; the HTTPS clients share the process),
// beside the raw rate of the cryptography the intermediary does per
// delivery — RSA-OAEP unwrap of the transport key, AES-256-GCM of the
// request, RSA verification of the client signature, the RSA supplier
// signature, RSA-OAEP wrap and AES-256-GCM of the encrypted answer, all
// with the demo PKI's RSA-4096 keys — on as many goroutines as there are
// cores, in the same run. Goal: at least half the raw rate.
// OSCI_BENCH_N (800) and OSCI_BENCH_CLIENTS (16) size it.
func BenchmarkStoreDelivery(b *testing.B) {
	n, clients := nodetest.EnvInt(b, "OSCI_BENCH_N", 800), nodetest.EnvInt(b, "OSCI_BENCH_CLIENTS", 16)
	ix := startIntermediary(b)
	alice := newClient(b, ix, "alice")
	bob := oscitest.Certificate(b, "bob_cipher_4096")
	text := strings.Repeat("Meldedaten ", 9<<10/11)
	attachment := bytes.Repeat([]byte{0xA5}, 1<<10)

	// Build the requests first, on every core: the client's signing and
	// encryption is not the intermediary's work.
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%06d", i)
	}
	ix.issue(b, ids...)
	reqs := make([][]byte, n)
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += runtime.GOMAXPROCS(0) {
				reqs[i] = alice.storeRequest(b, ids[i], "Last", text, attachment, bob)
			}
		}()
	}
	wg.Wait()

	// Warm up the connections and caches.
	for i := range clients {
		if status, out := ix.post(b, "/osci", reqs[i]); status != 200 || !bytes.Contains(out, []byte("osci_enc")) {
			b.Fatalf("warm-up: HTTP %d", status)
		}
	}
	next := clients
	var mu sync.Mutex
	var lat []time.Duration
	errs := make(chan error, clients)
	cpu0, start := processCPU(), time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				t0 := time.Now()
				status, out := ix.post(b, "/osci", reqs[i])
				d := time.Since(t0)
				if status != 200 || !bytes.Contains(out, []byte("osci_enc")) {
					errs <- fmt.Errorf("delivery %d: HTTP %d %.300s", i, status, out)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	slices.Sort(lat)
	done := len(lat)
	rate := float64(done) / elapsed.Seconds()
	perMsg := cpu / time.Duration(done)

	// The raw cryptography of one delivery, as the intermediary does it.
	manager, supplier := oscitest.Key(b, "osci_manager_cipher_4096"), oscitest.Key(b, "osci_manager_signature_4096")
	aliceSig, aliceCipher := oscitest.Key(b, "alice_signature_4096"), oscitest.Certificate(b, "alice_cipher_4096")
	size := len(reqs[0])
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, manager.Certificate().PublicKey.(*rsa.PublicKey), key, nil)
	if err != nil {
		b.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	sealed := gcm.Seal(nil, nonce, make([]byte, size), nil)
	digest := sha256.Sum256([]byte("SignedInfo"))
	clientSig, _ := rsa.SignPKCS1v15(rand.Reader, aliceSig.Key.(*rsa.PrivateKey), crypto.SHA256, digest[:])
	answer := make([]byte, 12<<10)
	raw := func() error {
		k, err := rsa.DecryptOAEP(sha256.New(), nil, manager.Key.(*rsa.PrivateKey), wrapped, nil)
		if err != nil {
			return err
		}
		blk, _ := aes.NewCipher(k)
		g, _ := cipher.NewGCM(blk)
		if _, err := g.Open(nil, nonce, sealed, nil); err != nil {
			return err
		}
		if err := rsa.VerifyPKCS1v15(aliceSig.Certificate().PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], clientSig); err != nil {
			return err
		}
		if _, err := supplier.Key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			return err
		}
		if _, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, aliceCipher.PublicKey.(*rsa.PublicKey), k, nil); err != nil {
			return err
		}
		g.Seal(nil, nonce, answer, nil)
		return nil
	}
	rawN := max(200, done/2)
	var count sync.Mutex
	left := rawN
	rawStart := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				count.Lock()
				if left == 0 {
					count.Unlock()
					return
				}
				left--
				count.Unlock()
				if err := raw(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rawElapsed := time.Since(rawStart)
	rawRate := float64(rawN) / rawElapsed.Seconds()
	rawPerMsg := rawElapsed * time.Duration(runtime.GOMAXPROCS(0)) / time.Duration(rawN)

	fmt.Printf("storeDelivery, %d KB requests (transport-encrypted, signed), %d clients, %d cores:\n", size>>10, clients, runtime.GOMAXPROCS(0))
	fmt.Printf("  intermediary   %7.1f deliveries/s   p50 %5.0f ms   p99 %5.0f ms   process CPU %5.1f ms/delivery\n",
		rate, ms(lat[done/2]), ms(lat[done*99/100]), ms(perMsg))
	fmt.Printf("  raw crypto     %7.1f deliveries/s   (RSA-OAEP unwrap, AES-GCM open, RSA verify, RSA sign, RSA-OAEP wrap, AES-GCM seal: %5.1f ms CPU/delivery)\n",
		rawRate, ms(rawPerMsg))
	fmt.Printf("  share          %7.0f %% of the raw rate (goal: 50 %%); CPU split: crypto %.1f ms, the rest %.1f ms (XML, C14N, TLS, HTTP client and server, PostgreSQL round trips)\n",
		100*rate/rawRate, ms(rawPerMsg), ms(perMsg-rawPerMsg))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkPartialDelivery prints what `make bench-osci` reports for large
// messages: a delivery with a 40 MiB attachment (OSCI_BENCH_PARTIAL_MB)
// sent by alice in 1 MiB chunks (each transport-encrypted and signed) and
// fetched by bob in 1 MiB chunks, the MiB/s of each way, and the peak
// growth of the process's resident memory (VmHWM after the run over VmRSS
// before it, the high-water mark reset first): the intermediary's share
// and the test client's chunk requests together. What bob fetches goes to a
// file and is checked after the measurement. The whole message is
// written to a file first, and sent from it chunk by chunk.
func BenchmarkPartialDelivery(b *testing.B) {
	mib := nodetest.EnvInt(b, "OSCI_BENCH_PARTIAL_MB", 40)
	ix := startIntermediary(b)
	alice, bob := newClient(b, ix, "alice"), newClient(b, ix, "bob")
	bobCipher := oscitest.Certificate(b, "bob_cipher_4096")
	attachment := make([]byte, mib<<20)
	_, _ = mathrand.NewChaCha8([32]byte{40}).Read(attachment)
	want := sha256.Sum256(attachment)
	alice.initDialog(b)
	id := alice.getMessageID(b)
	// The client reads the message it sends from a file, as it would: only
	// the chunk it sends is in its memory.
	sent, err := os.Create(filepath.Join(b.TempDir(), "sent.mime"))
	if err != nil {
		b.Fatal(err)
	}
	defer sent.Close()
	if _, err := sent.Write(alice.wholeStoreDelivery(b, id, "40 MiB", "groß", attachment, bobCipher)); err != nil {
		b.Fatal(err)
	}
	info, err := sent.Stat()
	if err != nil {
		b.Fatal(err)
	}
	attachment = nil
	fetched, err := os.Create(filepath.Join(b.TempDir(), "fetched.mime"))
	if err != nil {
		b.Fatal(err)
	}
	defer fetched.Close()

	runtime.GC()
	debug.FreeOSMemory()
	resetHWM := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	base := procStatusKB(b, "VmRSS")
	b.ResetTimer()
	start := time.Now()
	last := alice.partialStore(b, id, sent, info.Size(), 1024, bobCipher)
	store := time.Since(start)
	if !strings.HasPrefix(strings.Join(last.feedback, " "), "0801") {
		b.Fatalf("the delivery in chunks: feedback %v", last.feedback)
	}
	alice.exitDialog(b)
	bob.initDialog(b)
	start = time.Now()
	chunks := bob.partialFetchTo(b, 1024, fetched)
	fetch := time.Since(start)
	bob.exitDialog(b)
	b.StopTimer()
	peak := procStatusKB(b, "VmHWM")

	data, err := os.ReadFile(fetched.Name())
	if err != nil {
		b.Fatal(err)
	}
	msg, err := osci.ParseMIME(data)
	if err != nil {
		b.Fatal(err)
	}
	if p := msg.Part("anlage"); p == nil || sha256.Sum256(p.Body) != want {
		b.Fatal("the attachment bob fetched is not the one alice sent")
	}
	mb := float64(info.Size()) / (1 << 20)
	b.ReportMetric(mb/store.Seconds(), "store-MiB/s")
	b.ReportMetric(mb/fetch.Seconds(), "fetch-MiB/s")
	b.ReportMetric(float64(peak-base)/1024, "peak-RSS-growth-MiB")
	fmt.Printf("partial delivery: %.1f MiB message, %d MiB attachment\n", mb, mib)
	fmt.Printf("  store in 1 MiB chunks:  %5.1f s  %5.1f MiB/s\n", store.Seconds(), mb/store.Seconds())
	fmt.Printf("  fetch in %d chunks:     %5.1f s  %5.1f MiB/s\n", chunks, fetch.Seconds(), mb/fetch.Seconds())
	fmt.Printf("  peak RSS growth: %.1f MiB (VmRSS before %.1f MiB, VmHWM after %.1f MiB; high-water mark reset: %v; goal < 64 MiB)\n",
		float64(peak-base)/1024, float64(base)/1024, float64(peak)/1024, resetHWM)
}

// procStatusKB reads a kB field of /proc/self/status.
func procStatusKB(tb testing.TB, field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkTwoNodes prints what `make bench-osci` reports for the client
// role: XTA messages (10 KB) sent by 16 concurrent Fachverfahren clients
// on node A to a reader behind node B's intermediary, end to end (until
// every transport report on A is green: each message an OSCI dialog with
// initDialog, getMessageId, storeDelivery and exitDialog, signed and
// encrypted both ways, RSA-4096 demo keys), beside the rate of the same
// messages delivered locally on A in the same run. Both nodes share the
// process and its cores. OSCI_BENCH_N (200) sizes it.
func BenchmarkTwoNodes(b *testing.B) {
	n, clients := nodetest.EnvInt(b, "OSCI_BENCH_N", 200), 16
	certs := oscitest.Certs
	files := map[string][]byte{"pin": []byte("123456\n")}
	nb := nodetest.Start(b, nodetest.Options{Tenants: map[string]string{"bremen": fmt.Sprintf(receiverTenant, certs)}, Files: files, Clients: []string{"osci-node-a"}})
	directory := filepath.Join(b.TempDir(), "directory.yaml")
	na := nodetest.Start(b, nodetest.Options{Tenants: map[string]string{"koeln": fmt.Sprintf(authorTenant, certs)}, Files: files, Clients: []string{"fachverfahren"}, Directory: directory})
	na.Sender.HTTP = nb.HTTP("osci-node-a")
	writeDirectory(b, directory, "ags:04011000", nb.Base+"/osci", "osci_manager_cipher_4096", "osci_manager")
	doc := []byte(`<nachricht xmlns="urn:test">` + strings.Repeat("Meldedaten ", 10<<10/11) + `</nachricht>`)
	run := func(reader string) (float64, time.Duration) {
		ids := make([]string, n)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := na.XTAClient("fachverfahren", "ags:05315000")
				for i := w; i < n; i += clients {
					id, err := na.Send(b.Context(), c, "ags:05315000", reader, "nachricht", "urn:test", doc)
					if err != nil {
						b.Error(err)
						return
					}
					ids[i] = id
				}
			}()
		}
		wg.Wait()
		statuses := na.Settle(b, 10*time.Minute, ids...)
		elapsed := time.Since(start)
		for id, st := range statuses {
			if st != msgbox.StatusGreen && st != msgbox.StatusYellow { // yellow: no schema for the test namespace here
				b.Fatalf("message %s ended with status %d", id, st)
			}
		}
		return float64(n) / elapsed.Seconds(), elapsed
	}
	b.ResetTimer()
	local, localTime := run("ags:05315000")
	remote, remoteTime := run("ags:04011000")
	b.StopTimer()
	b.ReportMetric(remote, "A-to-B-msgs/s")
	b.ReportMetric(local, "local-msgs/s")
	fmt.Printf("XTA messages of 10 KB, %d by %d senders, two nodes in one process on %d cores:\n", n, clients, runtime.GOMAXPROCS(0))
	fmt.Printf("  A → B over OSCI   %6.1f messages/s (%.1f s, until every report on A is settled)\n", remote, remoteTime.Seconds())
	fmt.Printf("  A local (XTA)     %6.1f messages/s (%.1f s)\n", local, localTime.Seconds())
}
