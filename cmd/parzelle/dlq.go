package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/tenant"
)

const dlqUsage = "usage: parzelle dlq list --tenant ID [--all] [--json] | show --tenant ID N | retry --tenant ID N | discard --tenant ID --reason TEXT N  [--config FILE]"

// cmdDLQ lists, shows, retries and discards a tenant's dead letters.
func cmdDLQ(args []string) error {
	if len(args) == 0 {
		return errors.New(dlqUsage)
	}
	sub := args[0]
	var tenantID, reason string
	var all, asJSON bool
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	configPath := fs.String("config", defaultConfig(), "node configuration file")
	fs.StringVar(&tenantID, "tenant", "", "tenant id")
	fs.BoolVar(&all, "all", false, "list: also resolved dead letters")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.StringVar(&reason, "reason", "", "discard: why the message is given up (goes to the author's report and the audit log)")
	// Flags may come before or after the dead letter's number.
	var positional []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional, rest = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
	if tenantID == "" {
		return errors.New("--tenant is required\n" + dlqUsage)
	}
	want := 1 // the dead letter's number
	if sub == "list" {
		want = 0
	}
	if len(positional) != want {
		return errors.New(dlqUsage)
	}
	var id int64
	if sub != "list" {
		n, err := strconv.ParseInt(positional[0], 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a dead letter number", positional[0])
		}
		id = n
	}
	cfg, err := parseConfig("dlq", []string{"--config", *configPath}, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	ctx := context.Background()
	pool, closeDB, err := connect(ctx, cfg, log, 2)
	if err != nil {
		return err
	}
	defer closeDB()
	services, err := openServices(ctx, cfg, pool, log)
	if err != nil {
		return err
	}
	ops := services.Letters
	switch sub {
	case "list":
		ds, err := ops.List(ctx, tenantID, all)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(os.Stdout, ds)
		}
		printDeadLetters(os.Stdout, ds)
		return nil
	case "show":
		d, err := ops.Show(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(os.Stdout, d)
		}
		printDeadLetter(os.Stdout, d)
		return nil
	case "retry":
		if err := ops.Retry(ctx, operator(tenantID), tenantID, id); err != nil {
			return err
		}
		fmt.Printf("dead letter %d of %s: the message goes through the pipeline again with the tenant's current mapping specs\n", id, tenantID)
		return nil
	case "discard":
		if err := ops.Discard(ctx, operator(tenantID), tenantID, id, reason); err != nil {
			return err
		}
		fmt.Printf("dead letter %d of %s discarded; the author's report stays red\n", id, tenantID)
		return nil
	}
	return errors.New(dlqUsage)
}

// operator is the actor of an operator command: the system user on this
// host.
func operator(tenantID string) tenant.Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return tenant.Actor{Tenant: tenantID, Kind: "operator", Subject: name + "@" + host, Role: "operator", Purpose: "betrieb"}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printDeadLetters(w io.Writer, ds []jobs.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tSINCE\tMESSAGE\tTYPE\tAUTHOR\tSTEP\tCAUSE\tREASON\tRESOLVED")
	for _, d := range ds {
		resolved := "-"
		if d.ResolvedAt != nil {
			resolved = d.Resolution + " " + d.ResolvedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.CreatedAt.Local().Format(time.DateTime), d.MessageID, d.MessageType,
			d.Author, d.Step, d.Cause, shorten(d.Reason, 80), resolved)
	}
	tw.Flush()
	if len(ds) == 0 {
		fmt.Fprintln(w, "no dead letters")
	}
}

func printDeadLetter(w io.Writer, d jobs.DeadLetter) {
	fmt.Fprintf(w, "dead letter %d of tenant %s\n", d.ID, d.Tenant)
	fmt.Fprintf(w, "  message    %s (%s) from %s to %s\n", d.MessageID, d.MessageType, d.Author, d.Reader)
	if d.Inbox != 0 {
		fmt.Fprintf(w, "  stored as  XTA message box row %d (parzelle xta report shows the author's transport report)\n", d.Inbox)
	} else {
		fmt.Fprintln(w, "  stored as  no longer stored: the message was applied (parzelle xta report shows the author's transport report)")
	}
	fmt.Fprintf(w, "  since      %s, after %d attempt(s)\n", d.CreatedAt.Local().Format(time.DateTime), d.Attempts)
	fmt.Fprintf(w, "  step       %s (%s)\n  reason     %s\n", d.Step, d.Cause, d.Reason)
	for _, p := range d.Problems {
		fmt.Fprintf(w, "    - %s\n", p)
	}
	if len(d.History) > 1 {
		fmt.Fprintf(w, "  failed     %d times, retried in between:\n", len(d.History))
		for _, a := range d.History {
			fmt.Fprintf(w, "    %s  step %s (%s): %s\n", a.At.Local().Format(time.DateTime), a.Step, a.Cause, shorten(a.Reason, 100))
		}
	}
	if d.ResolvedAt != nil {
		fmt.Fprintf(w, "  resolved   %s %s\n", d.Resolution, d.ResolvedAt.Local().Format(time.DateTime))
	} else {
		fmt.Fprintf(w, "  next       parzelle dlq retry --tenant %s %d   (after fixing the spec or the sender)\n", d.Tenant, d.ID)
		fmt.Fprintf(w, "             parzelle dlq discard --tenant %s --reason '…' %d\n", d.Tenant, d.ID)
	}
}

func shorten(s string, n int) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) <= n {
		return string(r)
	}
	return string(r[:n-1]) + "…"
}
