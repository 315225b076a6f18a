package node_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db/dbtest"
)

// TestSlowClientsCutOff: 200 clients that send their headers and then
// trickle the body a byte a second are cut off after the body timeout,
// and the node still answers others.
func TestSlowClientsCutOff(t *testing.T) {
	const clients, bodyTimeout = 200, 2 * time.Second
	tn := startNode(t, dbtest.NewURL(t), config.HTTP{BodyTimeout: bodyTimeout, MaxConnsPerClient: 1000})
	cert := tn.demoCert(t, "duesseldorf")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(tn.caPEM)
	tlsCfg := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{*cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}

	start := time.Now()
	var wg sync.WaitGroup
	cut := make(chan time.Duration, clients)
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := tls.Dial("tcp", tn.addrs.Transport, tlsCfg)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /xta/v3/SendXtaPort HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n")
			// Trickle, and notice when the node has closed the connection.
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
				close(done)
			}()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					cut <- time.Since(start)
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("<")); err != nil {
						cut <- time.Since(start)
						return
					}
					if time.Since(start) > 30*time.Second {
						errs <- errors.New("a trickling client was not cut off within 30 s")
						return
					}
				}
			}
		}()
	}
	// Meanwhile another client is served.
	time.Sleep(500 * time.Millisecond)
	if status, _, _ := get(t, tn.client(cert), "https://"+tn.addrs.Transport+"/whoami"); status != http.StatusOK {
		t.Errorf("a normal request while 200 clients trickle: %d", status)
	}
	wg.Wait()
	close(cut)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var latest time.Duration
	n := 0
	for d := range cut {
		latest = max(latest, d)
		n++
	}
	if n != clients || latest > bodyTimeout+5*time.Second {
		t.Errorf("%d of %d trickling clients cut off, the last after %s (body timeout %s)", n, clients, latest, bodyTimeout)
	}
	t.Logf("%d trickling clients cut off, the last after %s", n, latest.Round(100*time.Millisecond))
}

// TestGreedyClient: connections beyond a client's share are closed at
// once, requests beyond its rate get 429 problem JSON with Retry-After.
func TestGreedyClient(t *testing.T) {
	tn := startNode(t, dbtest.NewURL(t), config.HTTP{MaxConnsPerClient: 5, RequestsPerSecond: 5, Burst: 5})
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", tn.addrs.Ops)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond) // accepted by now
	sixth, err := net.Dial("tcp", tn.addrs.Ops)
	if err != nil {
		t.Fatal(err)
	}
	_ = sixth.SetReadDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(sixth, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if n, err := sixth.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the sixth connection of one client was served (%d bytes, %v), want it closed", n, err)
	}
	sixth.Close()
	for _, c := range conns {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)

	c := &http.Client{Timeout: 5 * time.Second}
	var limited *http.Response
	for i := range 20 {
		resp, err := c.Get("http://" + tn.addrs.Ops + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
			if i < 5 || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Retry-After") == "" {
				t.Errorf("request %d: 429 %v %s", i+1, resp.Header, body)
			}
			break
		}
	}
	if limited == nil {
		t.Error("20 requests at once got no 429 with a limit of 5 per second")
	}
}
