// Package console is the operator web console on the ops listener: sign-in
// with roles, dead letters (list, detail, retry, discard, bulk), message
// traces, an overview per tenant and the tenants' configuration. Pages are
// rendered on the server with html/template; a page is one handler and one
// template.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

//go:embed templates/*.html static/*
var files embed.FS

// Prefix is where the console is mounted on the ops listener.
const Prefix = "/console/"

const (
	sessionCookie = "parzelle_session"
	loginCookie   = "parzelle_login"
	langCookie    = "parzelle_lang"
)

// Config is what the console reads and acts through.
type Config struct {
	Console config.Console
	Pool    *pgxpool.Pool
	Tenants *tenant.Registry
	Letters *jobs.DeadLetters
	Box     *msgbox.Store
	Store   *register.Store
	Keys    keys.Provider
	Metrics prometheus.Gatherer
	Log     *slog.Logger
	Now     func() time.Time
	// Ready is the node's readiness: "ready" or not, and each check.
	Ready func(context.Context) (string, map[string]string)
}

// Console serves the console's pages.
type Console struct {
	Config
	sessions sessions
	logins   *limiter
	pages    map[string]*template.Template
	mux      *http.ServeMux
	rates    *rateSampler

	mu    sync.Mutex
	bulks map[string]*bulkJob
}

// New returns the console; it reads (or creates) the session key.
func New(c Config) (*Console, error) {
	// Without a key file (a harness that does not set one) sessions are
	// signed with a key of this process only.
	key := []byte(randomToken() + randomToken())
	if c.Console.SessionKey != "" {
		var err error
		if key, err = loadSessionKey(c.Console.SessionKey); err != nil {
			return nil, err
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Console.SessionTTL == 0 {
		c.Console.SessionTTL = 8 * time.Hour
	}
	con := &Console{Config: c, sessions: sessions{key}, logins: newLimiter(5, 5*time.Minute), bulks: map[string]*bulkJob{},
		rates: newRateSampler(c.Metrics, 15*time.Second, 60)}
	var err error
	if con.pages, err = parsePages(); err != nil {
		return nil, err
	}
	con.routes()
	return con, nil
}

// Run samples the pipeline's counters for the overview's charts until ctx
// ends.
func (c *Console) Run(ctx context.Context) { c.rates.run(ctx) }

func (c *Console) routes() {
	m := http.NewServeMux()
	m.Handle("GET /console/static/", http.StripPrefix("/console/", http.FileServerFS(files)))
	m.HandleFunc("GET /console/login", c.loginPage)
	m.HandleFunc("POST /console/login", c.login)
	m.HandleFunc("GET /console/lang/{lang}", c.setLang)
	page := func(pattern string, h func(http.ResponseWriter, *http.Request, *session)) {
		m.Handle(pattern, c.signedIn(h))
	}
	page("POST /console/logout", c.logout)
	page("GET /console/{$}", c.overview)
	page("GET /console/dead-letters", c.deadLetters)
	page("GET /console/dead-letters/{tenant}/{id}", c.deadLetter)
	page("POST /console/dead-letters/{tenant}/{id}/retry", c.retry)
	page("POST /console/dead-letters/{tenant}/{id}/discard", c.discard)
	page("POST /console/dead-letters/bulk", c.bulk)
	page("GET /console/bulk/{id}", c.bulkProgress)
	page("GET /console/trace", c.trace)
	page("GET /console/tenants", c.tenantList)
	page("GET /console/tenants/{tenant}", c.tenantPage)
	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusNotFound, "no page at "+r.URL.Path)
	})
	c.mux = m
}

// ServeHTTP serves the console with the headers every page gets.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// signedIn runs h for a request with a valid session (and, if it changes
// something, a valid CSRF token); others go to the sign-in page.
func (c *Console) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			if r.Method != http.MethodGet {
				c.fail(w, r, nil, http.StatusUnauthorized, "Sign in first: "+err.Error())
				return
			}
			q := url.Values{"next": {r.URL.RequestURI()}}
			if cookie, _ := r.Cookie(sessionCookie); cookie != nil {
				q.Set("why", err.Error())
			}
			http.Redirect(w, r, Prefix+"login?"+q.Encode(), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameToken(r.PostFormValue("csrf"), c.sessions.csrf(s)) {
				c.fail(w, r, s, http.StatusForbidden, "The form's CSRF token is missing or wrong: reload the page and try again.")
				return
			}
		}
		h(w, r, s)
	})
}

// session is the request's valid session: signed, not expired, and of a
// user the configuration still lists with the same role, tenant and
// password.
func (c *Console) session(r *http.Request) (*session, error) {
	cookie, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errors.New("not signed in")
	}
	s, err := c.sessions.decode(cookie.Value, c.Now())
	if err != nil {
		return nil, err
	}
	u, ok := c.user(s.User)
	if !ok || u.Role != s.Role || u.Tenant != s.Tenant || credential(u) != s.Cred {
		return nil, errors.New("the account has changed; sign in again")
	}
	return s, nil
}

func (c *Console) user(name string) (config.ConsoleUser, bool) {
	for _, u := range c.Console.Users {
		if u.Name == name {
			return u, true
		}
	}
	return config.ConsoleUser{}, false
}

// actor is the session's user as the audit log names it.
func actor(s *session, tenantID string) tenant.Actor {
	return tenant.Actor{Tenant: tenantID, Kind: "console", Subject: s.User, Role: s.Role, Purpose: "betrieb"}
}

// visibleTenants are the tenants the session may see, in order.
func (c *Console) visibleTenants(s *session) []*tenant.Config {
	var out []*tenant.Config
	for _, t := range c.Tenants.Current().Tenants() {
		if s.operator() || t.ID == s.Tenant {
			out = append(out, t)
		}
	}
	return out
}

// allow reports whether the session may see the tenant; a refusal is
// answered with 403 and audited in that tenant's chain.
func (c *Console) allow(w http.ResponseWriter, r *http.Request, s *session, tenantID string) bool {
	if s.operator() && c.Tenants.Current().Tenant(tenantID) != nil || tenantID == s.Tenant {
		return true
	}
	if c.Tenants.Current().Tenant(tenantID) != nil {
		if err := c.Store.Audit(r.Context(), actor(s, s.Tenant), tenantID, "console page", register.OutcomeDenied, r.Method+" "+r.URL.Path); err != nil {
			c.Log.Error("audit a refused console page", "error", err)
		}
	}
	c.Log.Warn("console: page of another tenant refused", "user", s.User, "tenant", s.Tenant, "path", r.URL.Path)
	c.fail(w, r, s, http.StatusForbidden, "This page belongs to a tenant your account does not administer.")
	return false
}

// audit appends an entry to the tenant's audit chain; a failure is logged.
func (c *Console) audit(r *http.Request, s *session, tenantID, operation, outcome, detail string) {
	if err := c.Store.Audit(r.Context(), actor(s, tenantID), tenantID, operation, outcome, detail); err != nil {
		c.Log.Error("console: audit", "operation", operation, "tenant", tenantID, "error", err)
	}
}

// view is what every page template gets besides its own data.
type view struct {
	Title   string
	Nav     string
	S       *session
	CSRF    string
	Lang    string
	Path    string
	Now     time.Time
	Data    any
	Flash   string
	Error   string
	Version string
}

// render writes the page with its template.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, page, title string, data any) {
	v := view{Title: title, Nav: page, S: s, Lang: lang(r), Path: r.URL.RequestURI(), Now: c.Now(), Data: data, Flash: r.URL.Query().Get("flash")}
	if s != nil {
		v.CSRF = c.sessions.csrf(s)
	}
	t, ok := c.pages[page]
	if !ok {
		c.Log.Error("console: no template", "page", page)
		http.Error(w, "no template "+page, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "layout", v); err != nil {
		c.Log.Error("console: render", "page", page, "error", err)
	}
}

// fail shows an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	c.render(w, r, s, status, "error", http.StatusText(status), msg)
}

func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	l := r.PathValue("lang")
	if l != "de" && l != "en" {
		l = "de"
	}
	http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r), MaxAge: 365 * 86400})
	back := r.URL.Query().Get("back")
	if !localPath(back) {
		back = Prefix
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

func lang(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && c.Value == "en" {
		return "en"
	}
	return "de"
}

// localPath reports whether p is a path of the console, safe to redirect
// to.
func localPath(p string) bool {
	return strings.HasPrefix(p, Prefix) && !strings.ContainsAny(p, "\\\r\n") && !strings.HasPrefix(p, "//")
}

func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.Console.SecureCookies }

// clientAddr is the request's remote host.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	token := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: token, Path: Prefix + "login", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r), MaxAge: 3600})
	c.render(w, r, nil, http.StatusOK, "login", "Anmeldung", map[string]string{"Token": token, "Next": r.URL.Query().Get("next"), "Why": r.URL.Query().Get("why")})
}

// login checks the credentials and starts a session; every sign-in, and
// every failed one of a known user, is audited in the user's tenants.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	name, password, next := r.PostFormValue("user"), r.PostFormValue("password"), r.PostFormValue("next")
	again := func(status int, why string) {
		token := randomToken()
		http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: token, Path: Prefix + "login", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r), MaxAge: 3600})
		c.render(w, r, nil, status, "login", "Anmeldung", map[string]string{"Token": token, "Next": next, "Error": why, "User": name})
	}
	if cookie, err := r.Cookie(loginCookie); err != nil || !sameToken(cookie.Value, r.PostFormValue("csrf")) {
		again(http.StatusForbidden, "The form's CSRF token is missing or wrong: the page has been reloaded, try again.")
		return
	}
	now := c.Now()
	limitKeys := []string{"addr:" + clientAddr(r), "user:" + name}
	if wait := c.logins.wait(now, limitKeys...); wait > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		c.Log.Warn("console: sign-in refused, too many failures", "user", name, "remote", clientAddr(r))
		again(http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins: try again in %d seconds.", int(wait.Seconds())+1))
		return
	}
	u, known := c.user(name)
	hash := dummyHash
	if known {
		hash = u.PasswordHash
	}
	ok, err := checkPassword(hash, password)
	if err != nil {
		c.Log.Error("console: password hash", "user", name, "error", err)
	}
	tenants := []string{u.Tenant}
	if u.Role == config.RoleOperator {
		tenants = c.Tenants.Current().TenantIDs()
	}
	s := &session{User: u.Name, Role: u.Role, Tenant: u.Tenant, Expires: now.Add(c.Console.SessionTTL).Unix(), Nonce: randomToken(), Cred: credential(u)}
	if !ok || !known {
		c.logins.fail(now, limitKeys...)
		c.Log.Warn("console: sign-in failed", "user", name, "remote", clientAddr(r))
		if known {
			for _, t := range tenants {
				c.audit(r, s, t, "console sign-in", register.OutcomeDenied, "wrong password from "+clientAddr(r))
			}
		}
		again(http.StatusUnauthorized, "User name or password is wrong.")
		return
	}
	for _, t := range tenants {
		c.audit(r, s, t, "console sign-in", register.OutcomeGranted, "from "+clientAddr(r))
	}
	c.Log.Info("console: signed in", "user", name, "role", u.Role, "tenant", u.Tenant, "remote", clientAddr(r))
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: c.sessions.encode(s), Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.secure(r), Expires: time.Unix(s.Expires, 0)})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: Prefix + "login", MaxAge: -1})
	if !localPath(next) {
		next = Prefix
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r)})
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// tenantParam is the tenant a list page shows: the one asked for, or the
// session's (an operator's first).
func (c *Console) tenantParam(r *http.Request, s *session) string {
	if t := r.URL.Query().Get("tenant"); t != "" {
		return t
	}
	if !s.operator() {
		return s.Tenant
	}
	if ids := c.Tenants.Current().TenantIDs(); len(ids) > 0 {
		return ids[0]
	}
	return ""
}
