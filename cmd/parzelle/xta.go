package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
  report MESSAGEID        same as status, with every record
parzelle xta COMMAND --help lists the command's flags.`

// xtaCommands are the xta subcommands with their arguments.
var xtaCommands = map[string]string{
	"send": "FILE", "status": "MESSAGEID", "report": "MESSAGEID", "list": "", "fetch": "MESSAGEID", "close": "MESSAGEID...",
}

// cmdXTA is an XTA 2 Version 3 client for Fachverfahren and operators; it
// works against any XTA 2 V3 server.
func cmdXTA(args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Println(xtaUsage)
		return nil
	}
	sub := args[0]
	if _, ok := xtaCommands[sub]; !ok {
		return fmt.Errorf("unknown command %q\n%s", sub, xtaUsage)
	}
	fs := flag.NewFlagSet("xta "+sub, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: parzelle xta %s [FLAGS] %s\nflags:\n", sub, xtaCommands[sub])
		fs.PrintDefaults()
	}
	url := fs.String("url", "https://localhost:8443", "base URL of the XTA server (ports at /xta/v3/management, /send, /msgbox)")
	certFile := fs.String("cert", "", "client certificate (PEM)")
	keyFile := fs.String("key", "", "client key (PEM)")
	caFile := fs.String("ca", "", "CA that signed the server certificate (PEM); default: the system roots")
	account := fs.String("account", "", "the account (oscimeta:Author) to act for")
	mtom := fs.Bool("mtom", false, "send and receive content as MTOM/XOP MIME parts")
	var reader, service, messageType, schema, scenario, out *string
	var newOnly *bool
	var maxItems *int
	var attach listFlag
	switch sub {
	case "send":
		reader = fs.String("reader", "", "the reader's identifier")
		service = fs.String("service", "", "the service URI")
		messageType = fs.String("message-type", "", "the message type code")
		schema = fs.String("payload-schema", "", "the namespace of the message (payloadSchema)")
		scenario = fs.String("business-scenario", "XMELD_DATA", "business scenario code")
		fs.Var(&attach, "attach", "attachment file (repeatable)")
	case "list":
		newOnly = fs.Bool("new", false, "only messages not fetched yet")
		maxItems = fs.Int("max", 100, "at most this many entries")
	case "fetch":
		out = fs.String("out", ".", "directory for the message's parts")
	}
	if err := parseInterspersed(fs, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *certFile == "" || *keyFile == "" || *account == "" {
		return fmt.Errorf("--cert, --key and --account are required (parzelle xta %s --help lists the flags)", sub)
	}
	tcfg, _, err := pki.ClientTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		return fmt.Errorf("xta: %w", err)
	}
	c := &xta.Client{HTTP: &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{TLSClientConfig: tcfg}}, BaseURL: *url, Account: *account, MTOM: *mtom}
	if err := runXTA(c, sub, fs.Args(), *account, *caFile, sendFlags{reader, service, messageType, schema, scenario, attach}, newOnly, maxItems, out); err != nil {
		return explainConnection(err, *url, *caFile)
	}
	return nil
}

// sendFlags are xta send's own flags.
type sendFlags struct {
	reader, service, messageType, schema, scenario *string
	attach                                         listFlag
}

// runXTA runs an xta subcommand with its client.
func runXTA(c *xta.Client, sub string, pos []string, account, caFile string, sf sendFlags, newOnly *bool, maxItems *int, out *string) error {
	ctx := context.Background()
	need := func(n int) error {
		if len(pos) < n {
			return fmt.Errorf("give %s (parzelle xta %s --help)", xtaCommands[sub], sub)
		}
		return nil
	}
	switch sub {
	case "send":
		if err := need(1); err != nil {
			return err
		}
		if *sf.reader == "" || *sf.service == "" || *sf.messageType == "" {
			return errors.New("--reader, --service and --message-type are required")
		}
		id, err := c.CreateMessageID(ctx)
		if err != nil {
			return err
		}
		m := &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: account}, Reader: xta.Party{ID: *sf.reader},
			Service: *sf.service, BusinessScenario: *sf.scenario, MessageType: *sf.messageType, MessageTypeSchema: *sf.schema}
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
		for _, a := range sf.attach {
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

// explainConnection adds what to do to the errors an operator meets first
// when connecting: plain HTTP to the TLS port, a server certificate from a
// CA not given with --ca, a client certificate the node does not accept.
func explainConnection(err error, url, caFile string) error {
	msg := err.Error()
	var unknownCA x509.UnknownAuthorityError
	switch {
	case strings.Contains(msg, "Client sent an HTTP request to an HTTPS server"):
		return fmt.Errorf("%s speaks HTTPS: use --url %s", url, strings.Replace(url, "http://", "https://", 1))
	case errors.As(err, &unknownCA) || strings.Contains(msg, "certificate signed by unknown authority"):
		if caFile == "" {
			return fmt.Errorf("%w\nthe server's certificate is not from a CA this machine trusts: give its CA with --ca (the demo node's is var/pki/ca.crt)", err)
		}
		return fmt.Errorf("%w\nthe server's certificate is not from the CA in %s: give the CA that signed it", err, caFile)
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"), strings.Contains(msg, "remote error: tls: bad certificate"),
		strings.Contains(msg, "remote error: tls: certificate required"):
		return fmt.Errorf("%w\nthe node does not accept this client certificate: its CA must be in the tenant file's trust.clientCAs and the certificate's subject under clients (parzelle tenant check shows the tenant files)", err)
	}
	return err
}
