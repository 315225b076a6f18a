package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/node/nodetest"
)

// browser is a headless Chromium (Debian's chromium) signed in as one
// console user.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

func newBrowser(t *testing.T, n *nodetest.Node, user, shots string) *browser {
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("the console's browser tests need Debian's chromium (make test installs it): ", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 800),
		chromedp.Flag("headless", "new"), chromedp.Flag("disable-dev-shm-usage", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, which lives as long as its
	// context: that one has no timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal("start chromium: ", err)
	}
	b := &browser{t: t, ctx: ctx, base: n.Ops, shots: shots}
	b.run(chromedp.Navigate(n.Ops+"/console/"), chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), user), chromedp.SendKeys(chromedp.ID("password"), passwords[user]),
		chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("who")))
	return b
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

// get runs an action that returns a value.
func get[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

// open goes to a console path and returns the rendered page's HTML.
func (b *browser) open(path string) string {
	b.t.Helper()
	b.run(chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("main")))
	return get(b, chromedp.OuterHTML(chromedp.CSS("html")))
}

// html is the current page's HTML.
func (b *browser) html() string {
	b.t.Helper()
	b.run(chromedp.WaitReady(chromedp.CSS("main")))
	return get(b, chromedp.OuterHTML(chromedp.CSS("html")))
}

// shot saves a screenshot of the current page as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png := get(b, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// screenshots is the folder the browser tests write their screenshots to.
func screenshots(t *testing.T) string {
	dir, err := filepath.Abs(filepath.Join("..", "var", "screenshots", "console"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of the console's pages: %s", dir)
	return dir
}

// TestConsoleInBrowser walks the console as Düsseldorf's administrator
// fixing a dead letter, as Köln's administrator trying Düsseldorf's, and
// as the platform operator who must see no personal data.
func TestConsoleInBrowser(t *testing.T) {
	n := startNode(t, config.Console{})
	shots := screenshots(t)
	// Düsseldorf maps Zuzug only: the death notice (0040) becomes a dead
	// letter at the map step; Köln gets one of its own.
	dus := send(t, n, "duesseldorf", "01", "05")
	koe := send(t, n, "koeln", "01", "05")
	dead, foreign := dus[1], koe[1]

	admin := newBrowser(t, n, "duesseldorf-admin", shots)
	list := admin.open("/console/dead-letters")
	admin.shot("dead-letters")
	if !strings.Contains(list, dead) || strings.Contains(list, foreign) || strings.Contains(list, "koeln") {
		t.Fatalf("Düsseldorf's administrator should see Düsseldorf's dead letter only:\n%s", list)
	}
	m := regexp.MustCompile(`/console/dead-letters/duesseldorf/(\d+)"`).FindStringSubmatch(list)
	if m == nil {
		t.Fatal("no link to the dead letter")
	}
	detailPath := "/console/dead-letters/duesseldorf/" + m[1]
	detail := admin.open(detailPath)
	admin.shot("dead-letter-masked")
	// The mapping error points at the root element, line 4 of the message.
	if !regexp.MustCompile(`class="line marked" data-source="4"`).MatchString(detail) {
		t.Errorf("the error's line is not marked in the XML:\n%s", detail)
	}
	for _, p := range personalData {
		if strings.Contains(detail, p) {
			t.Errorf("the masked dead letter shows %q", p)
		}
	}
	revealed := admin.open(detailPath + "?reveal=1")
	admin.shot("dead-letter-revealed")
	if !strings.Contains(revealed, "Ćosić") || !strings.Contains(revealed, "no mapping spec") {
		t.Errorf("the revealed dead letter lacks the content or the reason:\n%s", revealed)
	}
	var viewed int
	if err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_entry WHERE tenant_id = 'duesseldorf' AND operation = 'dead-letter content viewed' AND actor = 'duesseldorf-admin'`).Scan(&viewed); err != nil || viewed != 1 {
		t.Errorf("%d audited content views (%v), want 1", viewed, err)
	}

	// The administrator adds the 0040 spec to the tenant file and retries.
	file := filepath.Join(n.Dir, "tenants", "duesseldorf.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(tenantWith(t, "duesseldorf", "zuzug", "tod"), "{{CA}}", filepath.Join(n.Dir, "ca.crt"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := n.Tenants.Reload(t.Context()); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("reload: %v %v", err, rep.Rejected)
	}
	admin.open(detailPath)
	admin.run(chromedp.Click(chromedp.ID("retry")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if after := admin.html(); strings.Contains(after, dead) {
		t.Errorf("the retried dead letter is still listed:\n%s", after)
	}
	var trace string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		trace = admin.open("/console/trace?tenant=duesseldorf&message=" + dead)
		if strings.Contains(trace, ">APPLIED<") || time.Now().After(deadline) {
			break
		}
	}
	admin.shot("trace")
	steps := regexp.MustCompile(`<td class="code">([^<]+)</td>`).FindAllStringSubmatch(trace, -1)
	var codes []string
	for _, s := range steps {
		codes = append(codes, s[1])
	}
	if len(codes) == 0 || !contains(codes, "DEAD_LETTER map (no-spec)") || !contains(codes, "RETRIED") || !contains(codes, "REGISTER") {
		t.Errorf("trace steps %q: want the dead letter, the retry, the register record and APPLIED", codes)
	}
	if i := lastIndex(codes, "APPLIED"); i < 0 || i < lastIndex(codes, "RETRIED") {
		t.Errorf("the trace does not end in APPLIED after the retry: %q", codes)
	}
	admin.open("/console/")
	admin.shot("overview-tenant-admin")
	admin.open("/console/tenants/duesseldorf")
	admin.shot("tenant")

	// Köln's administrator: a direct URL to Düsseldorf's dead letter.
	koeln := newBrowser(t, n, "koeln-admin", shots)
	denied := koeln.open(detailPath)
	if !strings.Contains(denied, "does not administer") {
		t.Errorf("Köln's administrator on Düsseldorf's dead letter:\n%s", denied)
	}
	var refused int
	if err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_entry WHERE tenant_id = 'duesseldorf' AND outcome = 'denied' AND actor = 'koeln-admin'`).Scan(&refused); err != nil || refused != 1 {
		t.Errorf("%d audited refusals in Düsseldorf's chain (%v), want 1", refused, err)
	}

	// The platform operator sees every tenant's metadata and no content.
	op := newBrowser(t, n, "betrieb", shots)
	pages := map[string]string{
		"overview":           "/console/",
		"dead-letters-koeln": "/console/dead-letters?tenant=koeln",
		"dead-letters-dus":   "/console/dead-letters?tenant=duesseldorf&resolved=1",
		"dead-letter-koeln":  "",
		"dead-letter-dus":    detailPath + "?reveal=1",
		"trace-operator":     "/console/trace?tenant=duesseldorf&message=" + dead,
		"tenants":            "/console/tenants",
		"tenant-operator":    "/console/tenants/koeln",
	}
	koelnList := op.open(pages["dead-letters-koeln"])
	km := regexp.MustCompile(`/console/dead-letters/koeln/(\d+)"`).FindStringSubmatch(koelnList)
	if km == nil {
		t.Fatalf("the operator does not see Köln's dead letter:\n%s", koelnList)
	}
	pages["dead-letter-koeln"] = "/console/dead-letters/koeln/" + km[1]
	for name, path := range pages {
		page := op.open(path)
		op.shot("operator-" + name)
		if strings.Contains(page, "Not Found") || strings.Contains(page, "Forbidden") {
			t.Errorf("operator page %s: %s", path, page)
		}
		for _, p := range personalData {
			if strings.Contains(page, p) {
				t.Errorf("the operator's page %s shows %q", path, p)
			}
		}
	}
}

func contains(list []string, s string) bool { return lastIndex(list, s) >= 0 }

func lastIndex(list []string, s string) int {
	for i := len(list) - 1; i >= 0; i-- {
		if list[i] == s {
			return i
		}
	}
	return -1
}
