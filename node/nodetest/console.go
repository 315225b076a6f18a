package nodetest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/console"
)

// ConsolePassword is the password of the console users every test node
// has unless Options.Console names others: "betrieb" (operator) and
// "<tenant>-admin" for each tenant.
const ConsolePassword = "nodetest-console-password"

var (
	hashOnce sync.Once
	hash     string
)

// defaultConsoleUsers are the operator and one administrator per tenant.
func defaultConsoleUsers(t testing.TB, tenants map[string]string) []config.ConsoleUser {
	hashOnce.Do(func() {
		var err error
		if hash, err = console.HashPassword(ConsolePassword); err != nil {
			t.Fatal(err)
		}
	})
	users := []config.ConsoleUser{{Name: "betrieb", Role: config.RoleOperator, PasswordHash: hash}}
	for id := range tenants {
		users = append(users, config.ConsoleUser{Name: id + "-admin", Role: config.RoleTenantAdmin, Tenant: id, PasswordHash: hash})
	}
	return users
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// ConsoleGet signs in to the console at ops (the ops listener's URL) as
// user and returns the status and body of the page at path.
func ConsoleGet(t testing.TB, ops, user, password, path string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	read := func(resp *http.Response, err error) (int, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	_, login := read(c.Get(ops + console.Prefix + "login"))
	m := csrfField.FindStringSubmatch(login)
	if m == nil {
		t.Fatalf("no sign-in form at %s:\n%s", ops, login)
	}
	if code, page := read(c.PostForm(ops+console.Prefix+"login", url.Values{"csrf": {m[1]}, "user": {user}, "password": {password}})); code != http.StatusOK {
		t.Fatalf("sign-in as %s: %d\n%s", user, code, page)
	}
	return read(c.Get(ops + path))
}
