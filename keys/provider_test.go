package keys_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/tenant"
)

// world is a tenant directory read by a real tenant.Registry and a
// FileProvider over it.
type world struct {
	dir      string
	ca       *pki.Authority
	registry *tenant.Registry
	provider *keys.FileProvider
	kekDir   string
}

const tenantYAML = `id: %[1]s
name: %[1]s
identities:
  - id: %[2]s
    type: xoev
    category: Meldebehörde
    transports: [osci]
trust:
  clientCAs: [ca.crt]
keys:
  signing:
    - key: %[1]s-signing.key
      cert: %[1]s-signing.crt
  decryption:
    - key: %[1]s-enc.key
      cert: %[1]s-enc.crt
  trust:
    signers: [ca.crt]
    counterparts:
      - identity: ags:00000001
        signers: [partner.crt]
`

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{dir: t.TempDir(), kekDir: filepath.Join(t.TempDir(), "keys")}
	var err error
	w.ca, err = pki.NewAuthority(pkix.Name{CommonName: "World CA"}, pki.ECDSAP256, time.Now().Add(-time.Hour), time.Now().Add(730*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(w.dir, "ca.crt"), pki.EncodeCertificate(w.ca.Cert))
	other, err := pki.NewAuthority(pkix.Name{CommonName: "Partner CA"}, pki.ECDSAP256, time.Now().Add(-time.Hour), time.Now().Add(730*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	partner, _, err := other.Issue(pki.Template{Subject: pkix.Name{CommonName: "partner"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 24 * time.Hour)}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(w.dir, "partner.crt"), pki.EncodeCertificate(partner))
	for i, id := range []string{"alpha", "beta"} {
		w.issue(t, id+"-signing", pki.ECDSAP256, 365*24*time.Hour)
		w.issue(t, id+"-enc", pki.RSA3072, 200*24*time.Hour)
		writeFile(t, filepath.Join(w.dir, id+".yaml"), fmt.Appendf(nil, tenantYAML, id, fmt.Sprintf("ags:0%d", i+1)))
	}
	w.registry = tenant.NewRegistry(w.dir, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	w.reload(t)
	w.provider = keys.NewFileProvider(w.kekDir, func() keys.Tenants { return w.registry.Current() })
	return w
}

// issue writes name.crt/name.key valid from an hour ago for the duration.
func (w *world) issue(t *testing.T, name string, alg pki.Algorithm, valid time.Duration) *x509.Certificate {
	t.Helper()
	cert, key, err := w.ca.Issue(pki.Template{Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(valid)}, alg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(w.dir, name+".crt"), filepath.Join(w.dir, name+".key"), cert, key); err != nil {
		t.Fatal(err)
	}
	return cert
}

func (w *world) reload(t *testing.T) tenant.Report {
	t.Helper()
	rep, err := w.registry.Reload(context.Background())
	if err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("reload: %v %v", err, rep.Rejected)
	}
	return rep
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestProviderKeysAndTrust(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	kp, err := w.provider.SigningKey(ctx, "alpha")
	if err != nil || kp.Certificate().Subject.CommonName != "alpha-signing" {
		t.Fatalf("signing key: %v %+v", err, kp)
	}
	dec, err := w.provider.DecryptionKeys(ctx, "beta")
	if err != nil || len(dec) != 1 || dec[0].Certificate().Subject.CommonName != "beta-enc" {
		t.Fatalf("decryption keys: %v %+v", err, dec)
	}
	partner := w.registry.Current().Tenant("alpha").KeyMaterial().Counterparts["ags:00000001"][0]
	for _, tc := range []struct {
		counterpart string
		trusted     bool
	}{{"", false}, {"ags:00000001", true}, {"ags:00000002", false}} {
		ts, err := w.provider.Trust(ctx, "alpha", tc.counterpart)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Verify(partner, nil, time.Now()); (err == nil) != tc.trusted {
			t.Errorf("partner certificate for counterpart %q: trusted=%v, want %v (%v)", tc.counterpart, err == nil, tc.trusted, err)
		}
		if _, err := ts.Verify(kp.Certificate(), nil, time.Now()); err != nil {
			t.Errorf("the tenant-wide CA is not trusted for %q: %v", tc.counterpart, err)
		}
	}

	for name, call := range map[string]func() error{
		"SigningKey":     func() error { _, err := w.provider.SigningKey(ctx, "gamma"); return err },
		"DecryptionKeys": func() error { _, err := w.provider.DecryptionKeys(ctx, "gamma"); return err },
		"Trust":          func() error { _, err := w.provider.Trust(ctx, "gamma", ""); return err },
		"WrapKey":        func() error { _, _, err := w.provider.WrapKey(ctx, "gamma", make([]byte, 32), nil); return err },
		"UnwrapKey":      func() error { _, err := w.provider.UnwrapKey(ctx, "gamma", 1, make([]byte, 60), nil); return err },
		"RotateKEK":      func() error { _, err := w.provider.RotateKEK(ctx, "gamma"); return err },
	} {
		if err := call(); !errors.Is(err, keys.ErrUnknownTenant) || !strings.Contains(err.Error(), `tenant "gamma"`) {
			t.Errorf("%s for an unknown tenant: %v", name, err)
		}
	}

	// A tenant without a keys section has nothing configured.
	data, _ := os.ReadFile(filepath.Join(w.dir, "beta.yaml"))
	writeFile(t, filepath.Join(w.dir, "beta.yaml"), data[:bytes.Index(data, []byte("keys:"))])
	w.reload(t)
	if _, err := w.provider.SigningKey(ctx, "beta"); !errors.Is(err, keys.ErrNotConfigured) || !strings.Contains(err.Error(), "keys.signing") {
		t.Errorf("no signing key: %v", err)
	}
	if _, err := w.provider.Trust(ctx, "beta", "ags:00000001"); !errors.Is(err, keys.ErrNotConfigured) {
		t.Errorf("no trust: %v", err)
	}
}

// TestProviderRotationWithoutRestart replaces a tenant's signing key file:
// after the registry's next reload the provider hands out the new key.
func TestProviderRotationWithoutRestart(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	old, err := w.provider.SigningKey(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	oldSum := w.registry.Current().Tenant("alpha").SHA256
	fresh := w.issue(t, "alpha-signing", pki.ECDSAP256, 400*24*time.Hour)

	// Until the reload, the running configuration stays.
	if kp, _ := w.provider.SigningKey(ctx, "alpha"); !kp.Certificate().Equal(old.Certificate()) {
		t.Fatal("the key changed before the reload")
	}
	rep := w.reload(t)
	if strings.Join(rep.Applied, ",") != "alpha" {
		t.Errorf("applied %v, want alpha only", rep.Applied)
	}
	kp, err := w.provider.SigningKey(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if !kp.Certificate().Equal(fresh) || kp.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(old.Key.Public()) {
		t.Error("after the reload the provider still hands out the old signing key")
	}
	if w.registry.Current().Tenant("alpha").SHA256 == oldSum {
		t.Error("the replaced key file is not a new configuration version")
	}
	if _, err := w.provider.SigningKey(ctx, "beta"); err != nil {
		t.Error(err)
	}
}

func TestKEKWrapUnwrapRotate(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	dek := bytes.Repeat([]byte{7}, 32)
	aad := []byte("register:alpha:record:42")

	wrapped, v1, err := w.provider.WrapKey(ctx, "alpha", dek, aad)
	if err != nil || v1 != 1 {
		t.Fatalf("wrap: version %d, %v", v1, err)
	}
	if len(wrapped) != 12+32+16 || bytes.Contains(wrapped, dek) {
		t.Errorf("wrapped key of %d bytes", len(wrapped))
	}
	kekFile := filepath.Join(w.kekDir, "alpha", "kek-1.key")
	for path, want := range map[string]os.FileMode{kekFile: 0o600, filepath.Dir(kekFile): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode(), want, err)
		}
	}
	if kek, _ := os.ReadFile(kekFile); len(kek) != keys.KEKSize {
		t.Errorf("KEK file holds %d bytes", len(kek))
	}

	v2, err := w.provider.RotateKEK(ctx, "alpha")
	if err != nil || v2 != 2 {
		t.Fatalf("rotate: %d %v", v2, err)
	}
	wrapped2, v, err := w.provider.WrapKey(ctx, "alpha", dek, aad)
	if err != nil || v != 2 {
		t.Fatalf("wrap after rotation: version %d, %v", v, err)
	}
	// A second provider (a restarted node) reads both versions from disk.
	restarted := keys.NewFileProvider(w.kekDir, func() keys.Tenants { return w.registry.Current() })
	for _, p := range []*keys.FileProvider{w.provider, restarted} {
		for _, tc := range []struct {
			version int
			wrapped []byte
		}{{1, wrapped}, {2, wrapped2}} {
			got, err := p.UnwrapKey(ctx, "alpha", tc.version, tc.wrapped, aad)
			if err != nil || !bytes.Equal(got, dek) {
				t.Errorf("unwrap version %d: %v", tc.version, err)
			}
		}
	}
	if _, v, _ := restarted.WrapKey(ctx, "alpha", dek, aad); v != 2 {
		t.Errorf("a restarted provider wraps with version %d, want 2", v)
	}

	tampered := bytes.Clone(wrapped)
	tampered[20] ^= 1
	for _, tc := range []struct {
		name    string
		tenant  string
		version int
		wrapped []byte
		aad     []byte
		want    string
	}{
		{"other aad", "alpha", 1, wrapped, []byte("register:alpha:record:43"), "authentication failed"},
		{"no aad", "alpha", 1, wrapped, nil, "authentication failed"},
		{"wrong version", "alpha", 2, wrapped, aad, "authentication failed"},
		{"altered", "alpha", 1, tampered, aad, "authentication failed"},
		{"other tenant", "beta", 1, wrapped, aad, "authentication failed"},
		{"unknown version", "alpha", 9, wrapped, aad, `tenant "alpha" has no key-encryption key version 9`},
		{"truncated", "alpha", 1, wrapped[:20], aad, "too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := w.provider.UnwrapKey(ctx, tc.tenant, tc.version, tc.wrapped, tc.aad)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %x, %v; want an error with %q", got, err, tc.want)
			}
		})
	}

	// A KEK file others can read is refused, not used.
	os.Chmod(filepath.Join(w.kekDir, "alpha", "kek-2.key"), 0o644)
	fresh := keys.NewFileProvider(w.kekDir, func() keys.Tenants { return w.registry.Current() })
	if _, _, err := fresh.WrapKey(ctx, "alpha", dek, aad); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable KEK: %v", err)
	}
}

func TestExpiryMetric(t *testing.T) {
	w := newWorld(t)
	c := keys.NewExpiryCollector(w.provider, slog.New(slog.NewTextHandler(io.Discard, nil)))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if n := testutil.CollectAndCount(c, "parzelle_certificate_expiry_seconds"); n != 8 {
		t.Errorf("%d series, want 2 tenants × 4 usages", n)
	}
	days := func(tenant, usage string) float64 {
		t.Helper()
		g, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range g {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["tenant"] == tenant && labels["usage"] == usage {
					return m.GetGauge().GetValue() / 86400
				}
			}
		}
		t.Fatalf("no series for %s/%s", tenant, usage)
		return 0
	}
	for _, tc := range []struct {
		usage string
		want  float64 // days
	}{
		{keys.UsageSigning, 365},    // leaf 365 d, CA in no chain (PEM holds the leaf only)
		{keys.UsageDecryption, 200}, // RSA key
		{keys.UsageTrust, 10},       // the partner certificate expires before the CA
		{keys.UsageClientCA, 730},   // the CA, two years
	} {
		if got := days("alpha", tc.usage); got < tc.want-1 || got > tc.want+0.01 {
			t.Errorf("alpha %s: %.2f days, want about %.0f", tc.usage, got, tc.want)
		}
	}

	// Rotation shows at the next scrape.
	w.issue(t, "alpha-enc", pki.RSA3072, 100*24*time.Hour)
	w.reload(t)
	if got := days("alpha", keys.UsageDecryption); got < 99 || got > 100.01 {
		t.Errorf("after rotation: %.2f days, want about 100", got)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", err, problems)
	}
}

// logRecords is an slog handler that keeps what it is given.
type logRecords struct{ records *[]slog.Record }

func (h logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h logRecords) Handle(_ context.Context, r slog.Record) error {
	*h.records = append(*h.records, r)
	return nil
}
func (h logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logRecords) WithGroup(string) slog.Handler      { return h }

func TestExpiryWarnings(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	var records []slog.Record
	log := slog.New(logRecords{&records})

	// Today only the partner certificate (10 days) is within 30 days, for
	// both tenants.
	if n := keys.CheckExpiry(ctx, w.provider, log, time.Now()); n != 2 {
		t.Errorf("%d warnings, want 2", n)
	}
	attrs := func(r slog.Record) map[string]string {
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
		return m
	}
	if len(records) != 2 {
		t.Fatalf("records: %v", records)
	}
	got := attrs(records[0])
	if records[0].Level != slog.LevelWarn || got["tenant"] != "alpha" || got["usage"] != "trust (ags:00000001)" || got["subject"] != "CN=partner" || got["days_left"] != "9" || got["not_after"] == "" {
		t.Errorf("warning: %s %s", records[0].Level, got)
	}

	// In 340 days the decryption keys (200 days) and the partner
	// certificate (10 days) have expired (ERROR) and the signing keys (365
	// days) expire within 30 days (WARN); the CA (730 days) is fine.
	records = nil
	keys.CheckExpiry(ctx, w.provider, log, time.Now().Add(340*24*time.Hour))
	levels := map[string]slog.Level{}
	for _, r := range records {
		a := attrs(r)
		levels[a["tenant"]+"/"+a["usage"]] = r.Level
	}
	want := map[string]slog.Level{
		"alpha/signing": slog.LevelWarn, "beta/signing": slog.LevelWarn,
		"alpha/decryption": slog.LevelError, "beta/decryption": slog.LevelError,
		"alpha/trust (ags:00000001)": slog.LevelError, "beta/trust (ags:00000001)": slog.LevelError,
	}
	if fmt.Sprint(levels) != fmt.Sprint(want) {
		t.Errorf("in 340 days:\n got %v\nwant %v", levels, want)
	}

	// The watcher checks at start and stops with its context.
	records = nil
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { keys.WatchExpiry(wctx, w.provider, log, time.Hour); close(done) }()
	cancel()
	<-done
	if len(records) != 2 {
		t.Errorf("the watcher logged %d records at start, want 2", len(records))
	}
}
