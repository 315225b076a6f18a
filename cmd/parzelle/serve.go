package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/node"
	"github.com/parzelle/parzelle/tenant"
)

// nodeGCPercent is the node's garbage-collection target unless GOGC is
// set: a node's live heap is small (tens of MiB) and most of what it
// allocates is a request's or a job's, gone when it ends. Collecting when
// the heap has grown by 400 % instead of Go's 100 % costs a few hundred MiB
// at most and saves about 5 % of the machine's CPU under load
// (bench-pipeline).
const nodeGCPercent = 400

func cmdServe(args []string) error {
	cfg, err := parseConfig("serve", args, nil)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(nodeGCPercent)
	}
	log := newLogger(cfg.Log)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	pool, closeDB, err := connect(ctx, cfg, log, int32(cfg.Database.MaxConns))
	if err != nil {
		return err
	}
	defer closeDB()
	if err := db.Migrate(ctx, pool, log); err != nil {
		return err
	}

	reg := node.NewMetricsRegistry(version)
	tenants := tenant.NewRegistry(cfg.Paths.Tenants, pool, log, reg)
	if _, err := tenants.Reload(ctx); err != nil {
		return err
	}
	n := node.New(cfg, pool, tenants, reg, log)
	services, err := node.Assemble(n, reg, node.WithLogger(log), node.WithVersion(version))
	if err != nil {
		return err
	}
	addrs, err := n.Listen()
	if err != nil {
		return err
	}
	printBanner(cfg, addrs, tenants.Current())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go tenants.Watch(ctx, cfg.TenantReload, hup)
	if err := services.Start(ctx); err != nil {
		return err
	}
	defer services.Stop()
	err = n.Serve(ctx)
	log.Info("node stopped")
	return err
}

func printBanner(cfg *config.Node, a node.Addrs, set *tenant.Set) {
	var ts []string
	for _, t := range set.Tenants() {
		ts = append(ts, fmt.Sprintf("%s (version %d)", t.ID, set.Version(t.ID)))
	}
	dbLine := "PostgreSQL at DATABASE_URL / database.url"
	if cfg.Database.URL == "" {
		dbLine = fmt.Sprintf("embedded PostgreSQL in %s (connection URL in %s/url)", cfg.Database.Embedded, cfg.Database.Embedded)
	}
	fmt.Printf(`
Parzelle %s is serving
  transport (HTTPS, client certificates required)  https://%[2]s/   (who am I: https://%[2]s/whoami)
  console (sign-in: see console.users)             http://%[3]s/console/
  metrics                                          http://%[3]s/metrics
  health / readiness                               http://%[3]s/healthz  http://%[3]s/readyz
  database                                         %[4]s
  tenants                                          %[6]s (from %[5]s)
Stop with Ctrl-C.

`, version, a.Transport, a.Ops, dbLine, cfg.Paths.Tenants, strings.Join(ts, ", "))
}

func cmdMigrate(args []string) error {
	cfg, err := parseConfig("migrate", args, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	ctx := context.Background()
	pool, closeDB, err := connect(ctx, cfg, log, 2)
	if err != nil {
		return err
	}
	defer closeDB()
	if err := db.Migrate(ctx, pool, log); err != nil {
		return err
	}
	fmt.Println("schema is up to date")
	return nil
}
