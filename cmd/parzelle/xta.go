package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/xta"
)

const xtaUsage = `usage: parzelle xta COMMAND --url URL --cert CERT --key KEY [--ca CA] --account ID [--mtom] ...
commands:
  send   --reader ID --service URI --message-type CODE [--business-scenario CODE] FILE [--attach FILE]...
  status MESSAGEID        the transport report of a sent message
  list   [--new] [--max N] the message box of the account
  fetch  MESSAGEID [--out DIR]   write the message's parts to DIR (not yet closed)
  close  MESSAGEID...     acknowledge fetched messages
  report MESSAGEID        same as status, with every record`

// cmdXTA is an XTA 2 Version 3 client for Fachverfahren and operators; it
// works against any XTA 2 V3 server.
func cmdXTA(args []string) error {
	if len(args) == 0 {
		return errors.New(xtaUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("xta "+sub, flag.ContinueOnError)
	url := fs.String("url", "https://localhost:8443", "base URL of the XTA server (ports at /xta/v3/management, /send, /msgbox)")
	certFile := fs.String("cert", "", "client certificate (PEM)")
	keyFile := fs.String("key", "", "client key (PEM)")
	caFile := fs.String("ca", "", "CA that signed the server certificate (PEM); default: the system roots")
	account := fs.String("account", "", "the account (oscimeta:Author) to act for")
	mtom := fs.Bool("mtom", false, "send and receive content as MTOM/XOP MIME parts")
	reader := fs.String("reader", "", "send: the reader's identifier")
	service := fs.String("service", "", "send: the service URI")
	messageType := fs.String("message-type", "", "send: the message type code")
	schema := fs.String("payload-schema", "", "send: the namespace of the message (payloadSchema)")
	scenario := fs.String("business-scenario", "XMELD_DATA", "send: business scenario code")
	newOnly := fs.Bool("new", false, "list: only messages not fetched yet")
	maxItems := fs.Int("max", 100, "list: at most this many entries")
	out := fs.String("out", ".", "fetch: directory for the message's parts")
	var attach listFlag
	fs.Var(&attach, "attach", "send: attachment file (repeatable)")
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	pos := fs.Args()
	if *certFile == "" || *keyFile == "" || *account == "" {
		return errors.New("xta: --cert, --key and --account are required\n" + xtaUsage)
	}
	tcfg, _, err := clientTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		return fmt.Errorf("xta: %w", err)
	}
	c := &xta.Client{HTTP: &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{TLSClientConfig: tcfg}}, BaseURL: *url, Account: *account, MTOM: *mtom}
	ctx := context.Background()
	need := func(n int) error {
		if len(pos) < n {
			return errors.New(xtaUsage)
		}
		return nil
	}
	switch sub {
	case "send":
		if err := need(1); err != nil {
			return err
		}
		if *reader == "" || *service == "" || *messageType == "" {
			return errors.New("xta send: --reader, --service and --message-type are required")
		}
		id, err := c.CreateMessageID(ctx)
		if err != nil {
			return err
		}
		m := &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: *account}, Reader: xta.Party{ID: *reader},
			Service: *service, BusinessScenario: *scenario, MessageType: *messageType, MessageTypeSchema: *schema}
		open := func(path string) (xta.OutgoingContent, func(), error) {
			f, err := os.Open(path)
			if err != nil {
				return xta.OutgoingContent{}, nil, fmt.Errorf("xta send: %w", err)
			}
			st, _ := f.Stat()
			ct := "application/octet-stream"
			if filepath.Ext(path) == ".xml" {
				ct = "text/xml"
			}
			return xta.OutgoingContent{ContentType: ct, Filename: filepath.Base(path), Data: f, Size: st.Size()}, func() { f.Close() }, nil
		}
		msg, done, err := open(pos[0])
		if err != nil {
			return err
		}
		defer done()
		m.Message = msg
		for _, a := range attach {
			ct, done, err := open(a)
			if err != nil {
				return err
			}
			defer done()
			m.Attachments = append(m.Attachments, ct)
		}
		if err := c.Send(ctx, m); err != nil {
			return err
		}
		fmt.Println(id)
	case "status", "report":
		if err := need(1); err != nil {
			return err
		}
		r, err := c.TransportReport(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Printf("status %d (%s)\n", r.Status, []string{"open", "green", "yellow", "red"}[min(max(r.Status, 0), 3)])
		if sub == "report" || r.Status > 1 {
			for _, rec := range r.Records {
				fmt.Printf("  %s  %-7s %-18s %s\n", rec.Time.Format(time.RFC3339), rec.Level, rec.Code, rec.Reason)
			}
		}
	case "list":
		l, err := c.StatusList(ctx, xta.ListOptions{Max: *maxItems, NewOnly: *newOnly})
		if err != nil {
			return err
		}
		for _, e := range l.Entries {
			fmt.Printf("%s  %d bytes\n", e.MessageID, e.Size)
		}
		fmt.Printf("%d listed, %d more pending\n", len(l.Entries), l.Pending)
	case "fetch":
		if err := need(1); err != nil {
			return err
		}
		m, err := c.GetMessage(ctx, pos[0])
		if err != nil {
			return err
		}
		for i, ct := range m.Contents {
			name := ct.Filename
			if name == "" {
				name = fmt.Sprintf("part-%d", i)
			}
			path := filepath.Join(*out, filepath.Base(name))
			if err := os.WriteFile(path, ct.Data, 0o600); err != nil {
				return fmt.Errorf("xta fetch: %w", err)
			}
			fmt.Printf("%s  %d bytes  %s\n", path, len(ct.Data), ct.ContentType)
		}
		fmt.Println("fetched; acknowledge with: parzelle xta close", m.MessageID)
	case "close":
		if err := need(1); err != nil {
			return err
		}
		if err := c.Close(ctx, pos...); err != nil {
			return err
		}
		fmt.Printf("closed %d message(s)\n", len(pos))
	default:
		return errors.New(xtaUsage)
	}
	return nil
}

// parseInterspersed parses flags that may come after positional arguments;
// fs.Args() are then the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// clientTLS is the TLS configuration of a command's client: the client
// certificate and, when caFile is given, its certificates as the only
// roots for the server (else the system's); it returns those too.
func clientTLS(certFile, keyFile, caFile string) (*tls.Config, []*x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	tcfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tcfg, nil, nil
	}
	cas, err := pki.LoadCertificates(caFile)
	if err != nil {
		return nil, nil, err
	}
	tcfg.RootCAs = x509.NewCertPool()
	for _, c := range cas {
		tcfg.RootCAs.AddCert(c)
	}
	return tcfg, cas, nil
}
