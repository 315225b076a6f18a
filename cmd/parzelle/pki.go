package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/parzelle/parzelle/pki"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdPKI(args []string) error {
	if len(args) == 0 || args[0] != "demo" {
		return errors.New("usage: parzelle pki demo [--out DIR] [--tenant ID]... [--algorithm ecdsa-p256|rsa-3072] [--host NAME]...")
	}
	fs := flag.NewFlagSet("pki demo", flag.ContinueOnError)
	out := fs.String("out", "var/pki", "directory of the demo PKI")
	alg := fs.String("algorithm", string(pki.ECDSAP256), "key algorithm: ecdsa-p256 or rsa-3072")
	var tenants, hosts listFlag
	fs.Var(&tenants, "tenant", "tenant to issue a client certificate for (repeatable; default duesseldorf and koeln)")
	fs.Var(&hosts, "host", "extra DNS name or IP address for the server certificate (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if len(tenants) == 0 {
		tenants = listFlag{"duesseldorf", "koeln"}
	}
	files, err := pki.Demo(*out, tenants, hosts, pki.Algorithm(*alg), time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("Demo PKI in %s (test use only):\n", *out)
	for _, f := range files {
		state := "reused"
		if f.Created {
			state = "created"
		}
		fmt.Printf("  %-8s %s\n", state, f.Path)
	}
	fmt.Println("Demo client certificates (each may act for its tenant's identities):")
	for _, t := range tenants {
		fmt.Printf("  %-12s %s  key %s\n", t, filepath.Join(*out, "clients", t+".crt"), filepath.Join(*out, "clients", t+".key"))
	}
	fmt.Printf("Try: curl --cacert %s --cert %s --key %s https://127.0.0.1:8443/whoami\n",
		filepath.Join(*out, "ca.crt"), filepath.Join(*out, "clients", tenants[0]+".crt"), filepath.Join(*out, "clients", tenants[0]+".key"))
	return nil
}
