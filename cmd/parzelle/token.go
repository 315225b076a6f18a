package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/tenant"
)

const tokenUsage = "usage: parzelle token issue --key FILE --issuer URL --audience A --tenant T --subject S --role R [--purpose P] [--ttl 1h]"

func cmdToken(args []string) error {
	if len(args) == 0 || args[0] != "issue" {
		return errors.New(tokenUsage)
	}
	return tokenIssue(args[1:], os.Stdout, time.Now())
}

// tokenIssue prints a signed token for a person, as the tenant's identity
// provider would issue it: for demos, tests and curl examples.
func tokenIssue(args []string, stdout io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("parzelle token issue", flag.ContinueOnError)
	keyFile := fs.String("key", "", "PEM private key of the issuer: ECDSA P-256 (ES256), RSA (RS256) or Ed25519 (EdDSA), e.g. var/pki/tenants/duesseldorf/idp.key")
	var c tenant.TokenClaims
	fs.StringVar(&c.Issuer, "issuer", "", "iss: the issuer URL the tenant file lists under access.tokens, e.g. https://idp.duesseldorf.demo")
	fs.StringVar(&c.Audience, "audience", "", "aud: the audience the tenant file lists for the issuer, e.g. parzelle")
	fs.StringVar(&c.Tenant, "tenant", "", "the tenant the person acts for")
	fs.StringVar(&c.Subject, "subject", "", "sub: who the person is")
	fs.StringVar(&c.Role, "role", "", "the person's role in the tenant's access rules")
	fs.StringVar(&c.Purpose, "purpose", "", "the purpose of the person's requests (optional)")
	fs.DurationVar(&c.TTL, "ttl", time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), tokenUsage)
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"key", *keyFile}, {"issuer", c.Issuer}, {"audience", c.Audience}, {"tenant", c.Tenant}, {"subject", c.Subject}, {"role", c.Role}} {
		if f.value == "" {
			missing = append(missing, "--"+f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s\n%s", strings.Join(missing, ", "), tokenUsage)
	}
	key, err := pki.LoadKey(*keyFile)
	if err != nil {
		return err
	}
	raw, err := tenant.SignToken(key, c, now)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, raw)
	return err
}
