// Command parzelle is the Parzelle node and its operator tools.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/parzelle/parzelle/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type command struct {
	name, args, help string
	run              func(args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"serve", "[--config FILE]", "run the node until SIGINT or SIGTERM", cmdServe},
		{"migrate", "[--config FILE]", "bring the database schema up to date and exit", cmdMigrate},
		{"pki", "demo [--out DIR] [--tenant ID]... [--algorithm A] [--host H]...", "generate the demo PKI (CA, server and client certificates)", cmdPKI},
		{"tenant", "check PATH... | history [--config FILE] [--tenant ID]", "check tenant files; show applied configuration versions", cmdTenant},
		{"pg", "temp -- CMD [ARG]... | status|stop [--config FILE]", "run CMD against a throwaway PostgreSQL cluster; manage the embedded one", cmdPG},
		{"xta", "send|status|list|fetch|close|report --url URL --cert C --key K --account ID ...", "XTA 2 Version 3 client for Fachverfahren and operators", cmdXTA},
		{"schemas", "[--config FILE]", "list the installed XML schema sets and the message types without a schema", cmdSchemas},
		{"keys", "list [--config FILE]", "list each tenant's keys and certificates with their expiry", cmdKeys},
		{"audit", "verify --tenant ID [--json] [--config FILE]", "check a tenant's audit log chain; exit 1 naming the first edited, deleted or reordered entry", cmdAudit},
		{"dlq", "list|show|retry|discard --tenant ID [N]", "the register pipeline's dead letters of a tenant: list, show, retry with the current specs, discard", cmdDLQ},
		{"console", "hash-password", "read a password from standard input and print its argon2id hash for console.users in the node config", cmdConsole},
		{"register", "rotate --tenant ID [--kek] [--wait] | rotations --tenant ID", "rotate a tenant's register data key (and KEK) and follow the re-encryption", cmdRegister},
		{"xml", "sign|verify|encrypt|decrypt|validate [FLAGS] FILE", "sign, verify, encrypt, decrypt and validate XML files", cmdXML},
		{"mapping", "test --spec FILE --message FILE | lint --spec FILE [--schemas DIR]...", "print the facts a message maps to (dry run); check a spec against the message schemas", cmdMapping},
		{"token", "issue --key FILE --issuer URL --audience A --tenant T --subject S --role R [--purpose P] [--ttl 1h]", "print a signed token for a person (demos, tests, curl examples)", cmdToken},
		{"osci", "inspect|send|fetch|cards …", "show a captured OSCI 1.2 request (inspect); test a connection to an OSCI intermediary: store, collect, process cards", cmdOSCI},
		{"xnachweis", "token --key FILE --issuer URL --purpose P REQUEST | request --url URL --cert C --key K ...", "seal a token for an evidence request; send one over HTTPS or XTA and check the signed answer", cmdXNachweis},
		{"version", "", "print the version", func([]string) error { fmt.Println("parzelle", version); return nil }},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: parzelle COMMAND [ARGS] [-v]\n\n-v: operator commands log INFO lines too (serve always does)\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n           %s\n", c.name, c.args, c.help)
	}
}

// exitError carries a process exit code through the error chain.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(os.Stdout)
		return
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			args := os.Args[2:]
			if c.name != "serve" {
				// Operator commands log INFO lines only when asked.
				args, verbose = withoutVerbose(args)
				quiet = !verbose
			}
			err := c.run(args)
			var exit exitError
			switch {
			case err == nil:
				return
			case errors.As(err, &exit):
				os.Exit(exit.code)
			case errors.Is(err, flag.ErrHelp), isFlagError(err):
				// The flag package printed the error and the usage.
				os.Exit(2)
			}
			fmt.Fprintln(os.Stderr, "parzelle "+c.name+":", err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "parzelle: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}

// defaultConfig is the node configuration file used when --config is not
// given: PARZELLE_CONFIG, else the demo configuration.
func defaultConfig() string {
	if v := os.Getenv("PARZELLE_CONFIG"); v != "" {
		return v
	}
	return "fixtures/node.yaml"
}

// quiet is set for operator commands run without -v: their log shows
// warnings and errors only.
var quiet, verbose bool

// withoutVerbose takes -v (or --verbose) out of a command's arguments,
// up to a "--" after which they belong to another program (parzelle pg
// temp -- go test -v).
func withoutVerbose(args []string) ([]string, bool) {
	var out []string
	found := false
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...), found
		}
		if a == "-v" || a == "--verbose" || a == "-verbose" {
			found = true
			continue
		}
		out = append(out, a)
	}
	return out, found
}

// isFlagError reports whether err is one the flag package reports (and
// has printed with the usage) for a mistyped flag.
func isFlagError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"flag provided but not defined", "invalid value ", "invalid boolean ", "flag needs an argument", "bad flag syntax"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func newLogger(c config.Log) *slog.Logger {
	level := slog.LevelInfo
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	if quiet && level < slog.LevelWarn {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
