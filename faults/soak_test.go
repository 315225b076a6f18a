package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/xta"
)

// soakRates is the mixed load of the soak, per second.
const (
	pipelineRate = 40 // XMeld messages into the register inbox
	boxRate      = 5  // messages into a message box, then listed, fetched and closed
	apiRate      = 40 // register searches, each followed by a read of the record
)

// latencies collects one minute's request times per kind.
type latencies struct {
	mu     sync.Mutex
	byKind map[string][]time.Duration
	errors map[string]int
	sample map[string]string // an error of each kind, for the log
}

func (l *latencies) add(kind string, d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errors[kind]++
		if l.sample == nil {
			l.sample = map[string]string{}
		}
		l.sample[kind] = err.Error()
		return
	}
	l.byKind[kind] = append(l.byKind[kind], d)
}

// take returns and resets the minute's figures.
func (l *latencies) take() (map[string][]time.Duration, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	by, errs := l.byKind, l.errors
	l.byKind, l.errors = map[string][]time.Duration{}, map[string]int{}
	return by, errs
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)*99/100]
}

// TestSoak runs mixed load for PARZELLE_SOAK (e.g. 30m) against a node
// subprocess and prints every minute, and at the end: throughput and p99
// per kind of request, errors, the node's RSS, goroutines and open files,
// its database connections and the sizes of the growing tables, so that a
// leak shows as a slope. make soak DURATION=30m runs it.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("PARZELLE_SOAK"))
	if err != nil {
		t.Skip("the soak runs with make soak DURATION=30m (PARZELLE_SOAK)")
	}
	w := newWorld(t, form{senders: 1, recover: 3 * time.Minute})
	w.start()
	p := w.nodes[0]
	lat := &latencies{byKind: map[string][]time.Duration{}, errors: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	every := func(rate int, fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					fn()
				}
			}
		}()
	}
	ctx := context.Background()
	timed := func(kind string, fn func() error) {
		start := time.Now()
		err := fn()
		lat.add(kind, time.Since(start), err)
	}
	// Pipeline load: new persons into Düsseldorf's register inbox.
	var names sync.Map // family name → applied (searched for later)
	var applied []string
	var appliedMu sync.Mutex
	for range 4 {
		every(pipelineRate/4, func() {
			timed("xta send (register inbox)", func() error {
				_, err := w.send(ctx, p, nil)
				return err
			})
		})
	}
	// Message box: send to the Fachverfahren's own account, list, fetch,
	// close.
	box := &xta.Client{HTTP: w.client, BaseURL: "https://" + p.Transport, Account: "ags:05111000"}
	every(boxRate, func() {
		timed("xta send/list/fetch/close (box)", func() error {
			id, err := box.CreateMessageID(ctx)
			if err != nil {
				return err
			}
			doc := []byte(`<?xml version="1.0"?><notiz xmlns="urn:parzelle:soak">Soak ` + id + `</notiz>`)
			err = box.Send(ctx, &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: "ags:05111000"}, Reader: xta.Party{ID: "ags:05111000"},
				Service: "urn:parzelle:soak", BusinessScenario: "XMELD_DATA", MessageType: "notiz",
				Message: xta.OutgoingContent{ContentType: "text/xml", Filename: "notiz.xml", Data: strings.NewReader(string(doc)), Size: int64(len(doc))}})
			if err != nil {
				return err
			}
			// Fetch and close what was delivered meanwhile.
			l, err := box.StatusList(ctx, xta.ListOptions{Max: 10})
			if err != nil {
				return err
			}
			var ids []string
			for _, e := range l.Entries {
				if _, err := box.GetMessage(ctx, e.MessageID); err != nil {
					return err
				}
				ids = append(ids, e.MessageID)
			}
			if len(ids) == 0 {
				return nil
			}
			return box.Close(ctx, ids...)
		})
	})
	// Register API: search a person the pipeline made, read the record.
	api := "https://" + p.Transport + "/api/v1/tenants/duesseldorf/registers/melderegister/records"
	get := func(u string, v any) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		req.Header.Set("Parzelle-Purpose", "meldewesen")
		resp, err := w.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	seen := 0
	every(apiRate, func() {
		appliedMu.Lock()
		if len(applied) == 0 {
			appliedMu.Unlock()
			return
		}
		seen++
		name := applied[seen%len(applied)]
		appliedMu.Unlock()
		timed("register search + read", func() error {
			var found struct{ Records []struct{ ID string } }
			q := url.Values{"familienname": {name}, "vornamen": {"Mirela Ana"}, "geburtsdatum": {"1987-04"}}
			if err := get(api+"?"+q.Encode(), &found); err != nil {
				return err
			}
			if len(found.Records) != 1 {
				return fmt.Errorf("search %s: %d records", name, len(found.Records))
			}
			var rec map[string]any
			return get(api+"/"+found.Records[0].ID, &rec)
		})
	})

	conn := w.connect(ctx)
	defer conn.Close(ctx)
	fmt.Printf("\nsoak for %s: %d/s into the register inbox, %d/s through a message box, %d/s register searches and reads\n", d, pipelineRate, boxRate, apiRate)
	fmt.Printf("%5s %8s %8s %8s %8s %8s %7s %6s %5s %5s %9s %9s %9s %9s\n", "min", "inbox/s", "p99 ms", "box/s", "p99 ms", "api/s", "p99 ms", "errors",
		"rss", "gor", "fds", "db conns", "facts MB", "boxes MB")
	start := time.Now()
	var pending []string
	for minute := 1; time.Since(start) < d; minute++ {
		time.Sleep(time.Until(start.Add(time.Duration(minute) * time.Minute)))
		// Persons accepted a minute ago are applied by now: searchable.
		appliedMu.Lock()
		applied = append(applied, pending...)
		appliedMu.Unlock()
		pending = nil
		w.mu.Lock()
		for id, name := range w.accepted {
			if _, ok := names.Load(name); !ok {
				names.Store(name, id)
				pending = append(pending, name)
			}
		}
		w.mu.Unlock()
		by, errs := lat.take()
		m := nodeMetrics(t, p)
		var conns int
		var facts, boxes float64
		_ = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
			pg_total_relation_size('register_fact') / 1048576.0,
			(pg_total_relation_size('xta_message') + pg_total_relation_size('xta_chunk') + pg_total_relation_size('xta_report_record')) / 1048576.0`).Scan(&conns, &facts, &boxes)
		nerr := 0
		for _, n := range errs {
			nerr += n
		}
		const inbox, mbox, reads = "xta send (register inbox)", "xta send/list/fetch/close (box)", "register search + read"
		fmt.Printf("%5d %8.1f %8.1f %8.1f %8.1f %8.1f %7.1f %6d %5.0f %5.0f %9.0f %9d %9.1f %9.1f\n", minute,
			float64(len(by[inbox]))/60, ms(p99(by[inbox])), float64(len(by[mbox]))/60, ms(p99(by[mbox])), float64(len(by[reads]))/60, ms(p99(by[reads])),
			nerr, m["process_resident_memory_bytes"]/1048576, m["go_goroutines"], m["process_open_fds"], conns, facts, boxes)
		for kind, n := range errs {
			lat.mu.Lock()
			t.Logf("minute %d: %d errors in %s, e.g. %s", minute, n, kind, lat.sample[kind])
			lat.mu.Unlock()
		}
	}
	close(stop)
	wg.Wait()
	// Nothing lost: every acknowledged message is applied.
	r := w.settle(time.Now())
	fmt.Printf("after the soak: %d messages acknowledged, %d applied, %d lost, %d applied twice, %d stuck; the backlog drained in %.1f s\n",
		r.accepted, r.applied, r.lost, r.twice, r.stuck, r.recovered.Seconds())
	if r.lost+r.stuck+r.twice > 0 {
		t.Errorf("after the soak: %+v", r)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// nodeMetrics reads the node's /metrics: the unlabelled values, and
// parzelle_pipeline_messages_total summed.
func nodeMetrics(t *testing.T, p *nodetest.Process) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + p.Ops + "/metrics")
	if err != nil {
		t.Logf("metrics: %v", err)
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		if base, _, labelled := strings.Cut(name, "{"); labelled {
			out[base] += v
			continue
		}
		out[name] = v
	}
	return out
}
