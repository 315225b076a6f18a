package console_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/node/nodetest"
)

// client is a console client that keeps cookies itself (Go's cookie jar
// would not send Secure cookies over plain HTTP).
type client struct {
	t       testing.TB
	base    string
	http    *http.Client
	cookies map[string]*http.Cookie
}

func newClient(t testing.TB, n *nodetest.Node) *client {
	return &client{t: t, base: n.Ops, cookies: map[string]*http.Cookie{},
		http: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, ck := range c.cookies {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck
		}
	}
	return resp, string(data)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login signs in and returns the session's CSRF token.
func (c *client) login(user, password string) *http.Response {
	c.t.Helper()
	_, page := c.do("GET", "/console/login", nil)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no CSRF token on the sign-in page:\n%s", page)
	}
	resp, _ := c.do("POST", "/console/login", url.Values{"csrf": {m[1]}, "user": {user}, "password": {password}})
	return resp
}

// csrf reads the session's CSRF token from a page.
func (c *client) csrf() string {
	c.t.Helper()
	_, page := c.do("GET", "/console/", nil)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no CSRF token on the overview:\n%s", page)
	}
	return m[1]
}

func openLetter(t *testing.T, n *nodetest.Node, tenantID string) jobs.DeadLetter {
	t.Helper()
	ls, _, err := n.Letters.Find(t.Context(), tenantID, jobs.DeadLetterFilter{}, 0, 10)
	if err != nil || len(ls) != 1 {
		t.Fatalf("open dead letters of %s: %+v %v", tenantID, ls, err)
	}
	return ls[0]
}

func TestConsoleSecurity(t *testing.T) {
	n := startNode(t, config.Console{SecureCookies: true, SessionTTL: 3 * time.Second})
	send(t, n, "duesseldorf", "05")
	send(t, n, "koeln", "05")
	dus, koe := openLetter(t, n, "duesseldorf"), openLetter(t, n, "koeln")

	// Pages need a session.
	anon := newClient(t, n)
	if resp, _ := anon.do("GET", "/console/dead-letters?tenant=koeln", nil); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login?") {
		t.Errorf("without a session: %d %s, want a redirect to sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A sign-in form without its CSRF token is refused.
	if resp, _ := anon.do("POST", "/console/login", url.Values{"user": {"betrieb"}, "password": {passwords["betrieb"]}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in without a CSRF token: %d", resp.StatusCode)
	}

	c := newClient(t, n)
	resp := c.login("duesseldorf-admin", passwords["duesseldorf-admin"])
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	session := c.cookies["parzelle_session"]
	if session == nil || !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteStrictMode || session.Path != "/console/" {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict", session)
	}
	token := c.csrf()
	retry := "/console/dead-letters/duesseldorf/" + itoa(dus.ID) + "/retry"
	for name, form := range map[string]url.Values{"no token": {}, "wrong token": {"csrf": {flip(token)}}} {
		if resp, _ := c.do("POST", retry, form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("retry with %s: %d, want 403", name, resp.StatusCode)
		}
	}
	// Changing the tenant in a form or URL does not reach Köln.
	if resp, _ := c.do("POST", "/console/dead-letters/koeln/"+itoa(koe.ID)+"/retry", url.Values{"csrf": {token}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("Düsseldorf's administrator retrying Köln's dead letter: %d, want 403", resp.StatusCode)
	}
	if resp, _ := c.do("POST", "/console/dead-letters/bulk", url.Values{"csrf": {token}, "tenant": {"koeln"}, "action": {"discard"}, "reason": {"x"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("Düsseldorf's administrator discarding Köln's dead letters in bulk: %d, want 403", resp.StatusCode)
	}
	if resp, _ := c.do("GET", "/console/trace?tenant=koeln&message="+url.QueryEscape(koe.MessageID), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("Düsseldorf's administrator tracing Köln's message: %d, want 403", resp.StatusCode)
	}
	if d, err := n.Letters.Show(t.Context(), "koeln", koe.ID); err != nil || d.ResolvedAt != nil {
		t.Errorf("Köln's dead letter after the attempts: %+v %v, want it open", d, err)
	}
	if d, err := n.Letters.Show(t.Context(), "duesseldorf", dus.ID); err != nil || d.ResolvedAt != nil {
		t.Errorf("Düsseldorf's dead letter after refused forms: %+v %v, want it open", d, err)
	}
	// A discard with the right token works, through the same identifiers
	// as the CLI's.
	if resp, _ := c.do("POST", "/console/dead-letters/duesseldorf/"+itoa(dus.ID)+"/discard", url.Values{"csrf": {token}, "reason": {"Absender sendet neu"}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("discard: %d", resp.StatusCode)
	}
	if d, err := n.Letters.Show(t.Context(), "duesseldorf", dus.ID); err != nil || d.Resolution != "discarded" {
		t.Errorf("after the discard: %+v %v", d, err)
	}

	// A forged or expired session leads to sign-in.
	forged := *session
	forged.Value = strings.Replace(session.Value, ".", "x.", 1)
	c.cookies["parzelle_session"] = &forged
	if resp, _ := c.do("GET", "/console/", nil); resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "not+valid") {
		t.Errorf("forged session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	c.cookies["parzelle_session"] = session
	time.Sleep(time.Until(session.Expires) + 100*time.Millisecond)
	if resp, _ := c.do("GET", "/console/dead-letters", nil); resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "expired") {
		t.Errorf("expired session: %d %s, want sign-in saying it expired", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Köln's administrator retries every no-spec dead letter in bulk; the
	// progress page follows it to the end.
	k := newClient(t, n)
	if resp := k.login("koeln-admin", passwords["koeln-admin"]); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	resp, _ = k.do("POST", "/console/dead-letters/bulk", url.Values{"csrf": {k.csrf()}, "tenant": {"koeln"}, "cause": {"no-spec"}, "action": {"retry"}})
	progress := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(progress, "/console/bulk/") {
		t.Fatalf("bulk retry: %d %s", resp.StatusCode, progress)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, page := k.do("GET", progress, nil)
		if strings.Contains(page, "1 erledigt, 0 fehlgeschlagen von 1 ✓") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bulk retry did not finish:\n%s", page)
		}
	}
	other := newClient(t, n)
	other.login("duesseldorf-admin", passwords["duesseldorf-admin"])
	if _, page := other.do("GET", progress, nil); !strings.Contains(page, "No such bulk action") {
		t.Errorf("another user sees the bulk action's progress")
	}
	var retried int
	if err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_entry WHERE tenant_id = 'koeln' AND operation = 'dead-letter retried' AND actor = 'koeln-admin'`).Scan(&retried); err != nil || retried != 1 {
		t.Errorf("%d audited bulk retries (%v), want 1", retried, err)
	}

	// Failed sign-ins are audited and, after five, refused for a while.
	bad := newClient(t, n)
	for i := range 5 {
		if resp := bad.login("koeln-admin", "falsch"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, resp.StatusCode)
		}
	}
	if resp := bad.login("koeln-admin", passwords["koeln-admin"]); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("sign-in after five failures: %d, want 429 with Retry-After", resp.StatusCode)
	}
	var denied, granted int
	if err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE outcome = 'denied' AND actor = 'koeln-admin'), count(*) FILTER (WHERE outcome = 'granted')
		FROM audit_entry WHERE operation = 'console sign-in'`).Scan(&denied, &granted); err != nil || denied != 5 || granted != 3 {
		t.Errorf("audited sign-ins: %d denied, %d granted (%v), want 5 and 3", denied, granted, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// flip changes the token's last character.
func flip(token string) string {
	last := "A"
	if strings.HasSuffix(token, "A") {
		last = "B"
	}
	return token[:len(token)-1] + last
}
