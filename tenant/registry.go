package tenant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/strictyaml"
)

// Registry holds the current tenant set, read from a directory of tenant
// files, and replaces it when the files change. A file that does not pass
// its checks is rejected and the tenant keeps its previous configuration;
// every applied version is recorded in the database before it goes live.
type Registry struct {
	dir  string
	pool *pgxpool.Pool
	log  *slog.Logger

	current atomic.Pointer[Set]

	mu       sync.Mutex // serialises Reload
	accepted map[string]*Config
	loaded   bool             // a Reload has succeeded
	rejected map[string]error // path → why, to log each rejection once
	problems atomic.Pointer[[]error]

	tenants  prometheus.Gauge
	reloads  *prometheus.CounterVec
	versions *prometheus.GaugeVec
}

// NewRegistry returns a registry for the tenant files in dir that records
// versions through pool and registers its metrics with reg. Call Reload to
// read the files.
func NewRegistry(dir string, pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) *Registry {
	r := &Registry{
		dir: dir, pool: pool, log: log,
		accepted: map[string]*Config{}, rejected: map[string]error{},
		tenants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parzelle_tenants", Help: "Active tenants.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_tenant_config_reloads_total", Help: "Tenant file checks by result: applied (something changed), unchanged, rejected (a file failed its checks), failed (could not record).",
		}, []string{"result"}),
		versions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parzelle_tenant_config_version", Help: "Applied configuration version per tenant.",
		}, []string{"tenant"}),
	}
	reg.MustRegister(r.tenants, r.reloads, r.versions)
	r.current.Store(newSet(nil, map[string]int{}))
	r.problems.Store(&[]error{})
	return r
}

// Current is the live tenant set.
func (r *Registry) Current() *Set { return r.current.Load() }

// Problems are the current rejections, one per rejected file.
func (r *Registry) Problems() []error { return *r.problems.Load() }

// Dir is the tenant directory.
func (r *Registry) Dir() string { return r.dir }

// Report says what one Reload did.
type Report struct {
	Applied  []string // tenants with a new version
	Removed  []string // tenants whose file is gone
	Rejected []error  // files that failed their checks
}

// Reload reads the tenant directory and applies what changed. It fails only
// when the directory cannot be read or the versions cannot be recorded;
// then nothing changes.
func (r *Registry) Reload(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep Report
	paths, err := listTenantFiles(r.dir)
	if err != nil {
		r.reloads.WithLabelValues("failed").Inc()
		return rep, err
	}

	next := map[string]*Config{}
	fresh := []string{}            // paths whose content is new or changed
	rejected := map[string]error{} // path → why
	for _, p := range paths {
		cfg, err := ParseFile(p)
		if err != nil {
			rejected[p] = err
			if old := r.accepted[p]; old != nil {
				next[p] = old
			}
			continue
		}
		if old := r.accepted[p]; old != nil && old.SHA256 == cfg.SHA256 {
			next[p] = old
			continue
		}
		next[p] = cfg
		fresh = append(fresh, p)
	}
	r.resolveConflicts(next, fresh, rejected)
	for _, p := range paths {
		if err := rejected[p]; err != nil {
			rep.Rejected = append(rep.Rejected, err)
		}
	}

	oldSet := r.Current()
	nextByID := map[string]*Config{}
	for _, c := range next {
		nextByID[c.ID] = c
		if oldSet.Tenant(c.ID) == nil || oldSet.Tenant(c.ID).SHA256 != c.SHA256 {
			rep.Applied = append(rep.Applied, c.ID)
		}
	}
	for _, c := range oldSet.Tenants() {
		if nextByID[c.ID] == nil {
			rep.Removed = append(rep.Removed, c.ID)
		}
	}
	sort.Strings(rep.Applied)

	// Versions are recorded only when something changed (and once at the
	// first load, to line the database up with the files): a quiet poll
	// costs no queries.
	versions := oldSet.versions
	if !r.loaded || len(rep.Applied)+len(rep.Removed) > 0 {
		if versions, err = r.record(ctx, nextByID); err != nil {
			r.reloads.WithLabelValues("failed").Inc()
			return Report{}, err
		}
	}
	r.loaded = true
	r.accepted = next
	r.current.Store(newSet(next, versions))
	r.report(rep, rejected, versions)
	return rep, nil
}

// resolveConflicts rejects (into rejected) a changed file that claims a
// transport identity or OSCI postbox another tenant owns; unchanged tenants keep what they
// have, and among changed files the first in name order wins.
func (r *Registry) resolveConflicts(next map[string]*Config, fresh []string, rejected map[string]error) {
	isFresh := map[string]bool{}
	for _, p := range fresh {
		isFresh[p] = true
	}
	owner := map[string]string{}
	var order []string
	for p := range next {
		if !isFresh[p] {
			order = append(order, p)
		}
	}
	sort.Strings(order)
	order = append(order, fresh...)
	for _, p := range order {
		c := next[p]
		err := conflictOf(c, owner)
		if err == nil {
			claim(c, owner)
			continue
		}
		rejected[p] = err
		if old := r.accepted[p]; old != nil {
			next[p] = old
			claim(old, owner)
		} else {
			delete(next, p)
		}
	}
}

// conflictOf reports the first claim of c that another tenant in owner
// holds: an identity, or an OSCI postbox's cipher certificate.
func conflictOf(c *Config, owner map[string]string) error {
	for i, id := range c.Identities {
		field := fmt.Sprintf("identities[%d].id", i)
		if other, taken := owner[id.ID]; taken && other != c.ID {
			return &strictyaml.Error{File: c.File, Line: c.pos.Line(field), Field: field, Msg: fmt.Sprintf("identity %q already belongs to tenant %s", id.ID, other)}
		}
		if key, ok := postboxClaim(&id); ok {
			if other, taken := owner[key]; taken && other != c.ID {
				field = fmt.Sprintf("identities[%d].osci.cipherCertificate", i)
				return &strictyaml.Error{File: c.File, Line: c.pos.Line(field), Field: field,
					Msg: fmt.Sprintf("the cipher certificate addresses an OSCI postbox of tenant %s already; each postbox needs its own", other)}
			}
		}
	}
	return nil
}

// claim records c's identities and postboxes as c's in owner.
func claim(c *Config, owner map[string]string) {
	for _, id := range c.Identities {
		owner[id.ID] = c.ID
		if key, ok := postboxClaim(&id); ok {
			owner[key] = c.ID
		}
	}
}

// record writes a new version for every tenant whose configuration differs
// from the last recorded one, deactivates tenants whose file is gone, and
// returns every active tenant's version; all in one transaction.
func (r *Registry) record(ctx context.Context, configs map[string]*Config) (map[string]int, error) {
	versions := map[string]int{}
	if r.pool == nil {
		return versions, nil
	}
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		ids := make([]string, 0, len(configs))
		for id := range configs {
			ids = append(ids, id)
		}
		sort.Strings(ids) // a fixed order: concurrent nodes take row locks alike
		for _, id := range ids {
			c := configs[id]
			var version int
			var sum string
			err := tx.QueryRow(ctx, `SELECT version, sha256 FROM tenant_config_version WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1`, id).Scan(&version, &sum)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("tenant: read version of %s: %w", id, err)
			}
			if sum != c.SHA256 {
				version++
				if _, err := tx.Exec(ctx, `INSERT INTO tenant (tenant_id, name, config_version) VALUES ($1, $2, $3)
					ON CONFLICT (tenant_id) DO UPDATE SET name = EXCLUDED.name, config_version = EXCLUDED.config_version, active = true, updated_at = now()`,
					id, c.Name, version); err != nil {
					return fmt.Errorf("tenant: record %s: %w", id, err)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO tenant_config_version (tenant_id, version, sha256, source_file, document) VALUES ($1, $2, $3, $4, $5)`,
					id, version, c.SHA256, c.File, string(c.Document)); err != nil {
					return fmt.Errorf("tenant: record version %d of %s: %w", version, id, err)
				}
			} else if _, err := tx.Exec(ctx, `UPDATE tenant SET active = true, updated_at = now() WHERE tenant_id = $1 AND NOT active`, id); err != nil {
				return fmt.Errorf("tenant: reactivate %s: %w", id, err)
			}
			versions[id] = version
		}
		if _, err := tx.Exec(ctx, `UPDATE tenant SET active = false, updated_at = now() WHERE active AND NOT (tenant_id = ANY($1))`, ids); err != nil {
			return fmt.Errorf("tenant: deactivate removed tenants: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return versions, nil
}

func (r *Registry) report(rep Report, rejected map[string]error, versions map[string]int) {
	set := r.Current()
	for _, id := range rep.Applied {
		r.log.Info("tenant configuration applied", "tenant", id, "version", versions[id], "file", set.Tenant(id).File)
	}
	for _, id := range rep.Removed {
		r.log.Warn("tenant file removed; tenant deactivated", "tenant", id)
		r.versions.DeleteLabelValues(id)
	}
	for file, err := range rejected {
		if old := r.rejected[file]; old == nil || old.Error() != err.Error() {
			r.log.Error("tenant file rejected; the previous configuration stays", "file", file, "error", err.Error())
		}
	}
	for file := range r.rejected {
		if rejected[file] == nil {
			r.log.Info("tenant file no longer rejected", "file", file)
		}
	}
	r.rejected = rejected
	r.problems.Store(&rep.Rejected)
	for id, v := range versions {
		r.versions.WithLabelValues(id).Set(float64(v))
	}
	r.tenants.Set(float64(len(set.tenants)))
	switch {
	case len(rep.Rejected) > 0:
		r.reloads.WithLabelValues("rejected").Inc()
	case len(rep.Applied)+len(rep.Removed) > 0:
		r.reloads.WithLabelValues("applied").Inc()
	default:
		r.reloads.WithLabelValues("unchanged").Inc()
	}
}

// Watch reloads every interval and whenever trigger fires (SIGHUP), until
// ctx ends.
func (r *Registry) Watch(ctx context.Context, interval time.Duration, trigger <-chan os.Signal) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-trigger:
			r.log.Info("reloading tenant files on signal", "dir", r.dir)
		}
		if _, err := r.Reload(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("tenant reload failed; the current configuration stays", "dir", r.dir, "error", err)
		}
	}
}

func listTenantFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tenant: read tenant directory: %w", err)
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		paths = append(paths, filepath.Join(dir, name))
	}
	return paths, nil
}

// ParseFile reads and checks one tenant file (see Parse).
func ParseFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &strictyaml.Error{File: path, Msg: err.Error()}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, strictyaml.MaxFileSize+1))
	if err != nil {
		return nil, &strictyaml.Error{File: path, Msg: err.Error()}
	}
	return Parse(path, data)
}
