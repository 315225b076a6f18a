// Package config reads the node's configuration file: listeners, database,
// key provider and paths. Relative paths in it are relative to the file's
// own directory, so a config works from wherever the node is started.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parzelle/parzelle/strictyaml"
)

// Node is the node configuration.
type Node struct {
	Listen   Listen   `yaml:"listen" conf:"required"`
	TLS      TLS      `yaml:"tls" conf:"required"`
	Database Database `yaml:"database"`
	Keys     Keys     `yaml:"keys" conf:"required"`
	Paths    Paths    `yaml:"paths" conf:"required"`
	Log      Log      `yaml:"log"`
	Console  Console  `yaml:"console"`
	HTTP     HTTP     `yaml:"http"`
	// Retention bounds how long the node keeps what it no longer needs.
	Retention Retention `yaml:"retention"`
	// OSCI is how the node reaches other OSCI intermediaries as a client.
	OSCI OSCIClient `yaml:"osci"`
	// TenantReload is how often the tenant directory is checked for changes
	// (SIGHUP checks at once). Default 2s.
	TenantReload time.Duration `yaml:"tenantReload"`

	// File is the path the configuration was read from.
	File string `yaml:"-"`
}

// Listen holds the listener addresses.
type Listen struct {
	// Transport is the HTTPS listener with client-certificate
	// authentication: XTA, OSCI, XNachweis and the register API.
	Transport string `yaml:"transport" conf:"required"`
	// Ops serves the console, /metrics, /healthz and /readyz.
	Ops string `yaml:"ops" conf:"required"`
}

// TLS is the transport listener's server certificate.
type TLS struct {
	Cert string `yaml:"cert" conf:"required"`
	Key  string `yaml:"key" conf:"required"`
}

// OSCIClient is the node's TLS identity towards other OSCI intermediaries
// (another Parzelle node asks for a client certificate its tenant's
// trust.clientCAs accepts) and the roots their server certificates must
// chain to (default: the system's). Files are PEM.
type OSCIClient struct {
	ClientCert string `yaml:"clientCert"`
	ClientKey  string `yaml:"clientKey"`
	ServerCA   string `yaml:"serverCA"`
}

// Database says where the data lives. The DATABASE_URL environment variable
// overrides URL; with neither set, the node runs an embedded PostgreSQL
// cluster in Embedded.
type Database struct {
	URL      string `yaml:"url"`
	Embedded string `yaml:"embedded"`
	MaxConns int    `yaml:"maxConns"`
}

// Keys configures the key provider for tenant signing, decryption and
// data keys.
type Keys struct {
	Provider string `yaml:"provider" conf:"required"` // "file"
	Dir      string `yaml:"dir" conf:"required"`
}

// Paths are the directories the node reads.
type Paths struct {
	Tenants string `yaml:"tenants" conf:"required"`
	// Schemas are directories of installed official XML schemas.
	Schemas []string `yaml:"schemas"`
	// Directory is the static directory file lookupService reads for
	// readers not hosted here (DVDV-shaped entries); empty for none.
	Directory string `yaml:"directory"`
}

// HTTP bounds what one client can hold of the listeners, so that slow or
// greedy clients cannot starve the others. Zero fields take the defaults
// (Defaults).
type HTTP struct {
	// HeaderTimeout bounds reading a request's headers (default 10s).
	HeaderTimeout time.Duration `yaml:"headerTimeout"`
	// BodyTimeout bounds reading a whole request, headers and body: a
	// client trickling its body is cut off then (default 5m, for 40 MB
	// messages on slow links).
	BodyTimeout time.Duration `yaml:"bodyTimeout"`
	// IdleTimeout closes keep-alive connections without a request for
	// that long (default 2m).
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MaxConnsPerClient bounds the open connections from one address
	// (default 128); more are closed at once.
	MaxConnsPerClient int `yaml:"maxConnsPerClient"`
	// RequestsPerSecond and Burst bound the requests of one address
	// (defaults 2000 and twice that: a Rechenzentrum's Fachverfahren may
	// all come through one proxy); more get 429 with Retry-After.
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	Burst             int     `yaml:"burst"`
}

// WithDefaults returns h with the defaults for fields left zero.
func (h HTTP) WithDefaults() HTTP {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&h.HeaderTimeout, 10*time.Second)
	def(&h.BodyTimeout, 5*time.Minute)
	def(&h.IdleTimeout, 2*time.Minute)
	if h.MaxConnsPerClient == 0 {
		h.MaxConnsPerClient = 128
	}
	if h.RequestsPerSecond == 0 {
		h.RequestsPerSecond = 2000
	}
	if h.Burst == 0 {
		h.Burst = 2 * int(h.RequestsPerSecond)
	}
	return h
}

// Retention is how long the node keeps data it is done with (register
// data has its retention per tenant and register, in the tenant file).
type Retention struct {
	// DeadLetters is how long a resolved (retried or discarded) dead
	// letter is kept, with the sealed error texts that may quote the
	// message; default 90 days.
	DeadLetters time.Duration `yaml:"deadLetters"`
	// Messages is how long the node keeps a transport message it is done
	// with (received and closed, or applied, its report final), metadata
	// and report; default 90 days. Content goes at once on close.
	Messages time.Duration `yaml:"messages"`
}

// WithDefaults returns r with the defaults for fields left zero.
func (r Retention) WithDefaults() Retention {
	if r.DeadLetters == 0 {
		r.DeadLetters = 90 * 24 * time.Hour
	}
	if r.Messages == 0 {
		r.Messages = 90 * 24 * time.Hour
	}
	return r
}

// Console configures the operator web console on the ops listener: who
// may sign in, and how sessions are kept.
type Console struct {
	// Users sign in with a password; none means nobody can sign in.
	Users []ConsoleUser `yaml:"users"`
	// SessionKey is the file of the key that signs session cookies; it is
	// created (32 random bytes) when missing. Nodes of a cluster share it.
	SessionKey string `yaml:"sessionKey"`
	// SessionTTL is how long a session lasts after sign-in (default 8h).
	SessionTTL time.Duration `yaml:"sessionTTL"`
	// SecureCookies marks cookies Secure even though the ops listener
	// speaks plain HTTP: set it behind a proxy that terminates TLS.
	SecureCookies bool `yaml:"secureCookies"`
}

// ConsoleUser is a person who may sign in to the console.
type ConsoleUser struct {
	Name string `yaml:"name" conf:"required"`
	// Role is "operator" (every tenant's operational metadata, never
	// content) or "tenant-admin" (one tenant, its dead letters' content).
	Role string `yaml:"role" conf:"required"`
	// Tenant is the tenant of a tenant-admin.
	Tenant string `yaml:"tenant"`
	// PasswordHash is an argon2id hash in PHC form, as
	// `parzelle console hash-password` prints it.
	PasswordHash string `yaml:"passwordHash" conf:"required"`
}

// The console roles.
const (
	RoleOperator    = "operator"
	RoleTenantAdmin = "tenant-admin"
)

// Log configures structured logging.
type Log struct {
	Format string `yaml:"format"` // "text" (default) or "json"
	Level  string `yaml:"level"`  // "debug", "info" (default), "warn", "error"
}

// Load reads and checks the configuration file at path.
func Load(path string) (*Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	n := &Node{File: path}
	pos, err := strictyaml.Decode(path, data, n)
	if !pos.Parsed() {
		return nil, err
	}
	n.check(pos)
	if err := pos.Err(); err != nil {
		return nil, err
	}
	if n.TenantReload == 0 {
		n.TenantReload = 2 * time.Second
	}
	if n.Console.SessionTTL == 0 {
		n.Console.SessionTTL = 8 * time.Hour
	}
	n.HTTP = n.HTTP.WithDefaults()
	if n.Console.SessionKey == "" {
		n.Console.SessionKey = filepath.Join(n.Keys.Dir, "console-session.key")
	}
	if v := os.Getenv("DATABASE_URL"); v != "" {
		n.Database.URL = v
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&n.TLS.Cert, &n.TLS.Key, &n.Database.Embedded, &n.Keys.Dir, &n.Paths.Tenants, &n.Paths.Directory, &n.Console.SessionKey,
		&n.OSCI.ClientCert, &n.OSCI.ClientKey, &n.OSCI.ServerCA} {
		*p = resolve(base, *p)
	}
	for i := range n.Paths.Schemas {
		n.Paths.Schemas[i] = resolve(base, n.Paths.Schemas[i])
	}
	return n, nil
}

func (n *Node) check(pos *strictyaml.Positions) {
	for field, addr := range map[string]string{"listen.transport": n.Listen.Transport, "listen.ops": n.Listen.Ops} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			pos.Errorf(field, "want host:port, got %q", addr)
		}
	}
	if n.Database.URL == "" && n.Database.Embedded == "" && os.Getenv("DATABASE_URL") == "" {
		pos.Errorf("database", "give url or embedded (or set DATABASE_URL)")
	}
	if n.Database.MaxConns < 0 {
		pos.Errorf("database.maxConns", "must not be negative")
	}
	if (n.OSCI.ClientCert == "") != (n.OSCI.ClientKey == "") {
		pos.Errorf("osci", "clientCert and clientKey go together")
	}
	if n.Keys.Provider != "" && n.Keys.Provider != "file" {
		pos.Errorf("keys.provider", "unknown key provider %q (known: file)", n.Keys.Provider)
	}
	switch n.Log.Format {
	case "", "text", "json":
	default:
		pos.Errorf("log.format", "want text or json, got %q", n.Log.Format)
	}
	switch n.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		pos.Errorf("log.level", "want debug, info, warn or error, got %q", n.Log.Level)
	}
	seen := map[string]bool{}
	for i, u := range n.Console.Users {
		f := fmt.Sprintf("console.users[%d]", i)
		switch {
		case seen[u.Name]:
			pos.Errorf(f+".name", "user %q is listed twice", u.Name)
		case u.Role == RoleOperator && u.Tenant != "":
			pos.Errorf(f+".tenant", "an operator sees every tenant's metadata; leave out tenant (or make the user a tenant-admin)")
		case u.Role == RoleTenantAdmin && u.Tenant == "":
			pos.Errorf(f+".tenant", "name the tenant this tenant-admin administers")
		case u.Role != RoleOperator && u.Role != RoleTenantAdmin:
			pos.Errorf(f+".role", "want operator or tenant-admin, got %q", u.Role)
		case !strings.HasPrefix(u.PasswordHash, "$argon2id$"):
			pos.Errorf(f+".passwordHash", "want an argon2id hash ($argon2id$…) as `parzelle console hash-password` prints it, never a password")
		}
		seen[u.Name] = true
	}
	if n.Retention.DeadLetters < 0 || (n.Retention.DeadLetters > 0 && n.Retention.DeadLetters < 24*time.Hour) {
		pos.Errorf("retention.deadLetters", "give at least a day (1d): operators need the time to look at what they resolved")
	}
	if n.Retention.Messages < 0 || (n.Retention.Messages > 0 && n.Retention.Messages < 24*time.Hour) {
		pos.Errorf("retention.messages", "give at least a day (1d): authors need the time to read their transport reports")
	}
	if h := n.HTTP; h.HeaderTimeout < 0 || h.BodyTimeout < 0 || h.IdleTimeout < 0 || h.MaxConnsPerClient < 0 || h.RequestsPerSecond < 0 || h.Burst < 0 {
		pos.Errorf("http", "timeouts and limits must not be negative")
	}
	if n.Console.SessionTTL < 0 {
		pos.Errorf("console.sessionTTL", "must not be negative")
	}
	if n.TenantReload < 0 {
		pos.Errorf("tenantReload", "must not be negative")
	}
}

func resolve(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}
