package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/pgcluster"
)

// parseConfig parses a node command's flags: --config, plus what addFlags
// registers, and loads the configuration file.
func parseConfig(name string, args []string, addFlags func(*flag.FlagSet)) (*config.Node, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	configPath := fs.String("config", defaultConfig(), "node configuration file")
	if addFlags != nil {
		addFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return config.Load(*configPath)
}

// connect opens a pool on the node's database, starting the embedded
// cluster when the configuration asks for it; closeDB closes the pool and
// stops a cluster this call started.
func connect(ctx context.Context, cfg *config.Node, log *slog.Logger, maxConns int32) (pool *pgxpool.Pool, closeDB func(), err error) {
	dbURL, stopDB, err := database(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	pool, err = db.Open(ctx, dbURL, maxConns)
	if err != nil {
		stopDB()
		return nil, nil, err
	}
	return pool, func() { pool.Close(); stopDB() }, nil
}

// embeddedDatabase is the database name and owner role of the embedded
// cluster.
const embeddedDatabase = "parzelle"

// database returns the URL the node uses: the configured one, or the
// embedded cluster's, which it creates and starts when needed. stop stops
// the embedded cluster again if this call started it.
func database(ctx context.Context, cfg *config.Node, log *slog.Logger) (dbURL string, stop func(), err error) {
	noop := func() {}
	if cfg.Database.URL != "" {
		return cfg.Database.URL, noop, nil
	}
	dir := cfg.Database.Embedded
	c, err := pgcluster.New(dir)
	if err != nil {
		return "", noop, err
	}
	if !c.Initialized() {
		log.Info("creating the embedded PostgreSQL cluster", "dir", dir, "bin", c.BinDir())
		if err := c.Init(ctx); err != nil {
			return "", noop, err
		}
	}
	started, err := c.Start(ctx)
	if err != nil {
		return "", noop, err
	}
	stop = func() {
		if !started {
			return
		}
		log.Info("stopping the embedded PostgreSQL cluster", "dir", dir)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			log.Error("stop the embedded PostgreSQL cluster", "error", err)
		}
	}
	if started {
		log.Info("embedded PostgreSQL cluster started", "dir", dir)
	} else {
		log.Info("embedded PostgreSQL cluster already running; reusing it and leaving it running", "dir", dir)
	}
	dbURL, err = provisionEmbedded(ctx, c)
	if err != nil {
		stop()
		return "", noop, err
	}
	return dbURL, stop, nil
}

// provisionEmbedded makes sure the embedded cluster has the parzelle role
// and database and writes their URL to DIR/url (readable by the owner only):
// the role owns every table, so it can also dump the database.
func provisionEmbedded(ctx context.Context, c *pgcluster.Cluster) (string, error) {
	urlFile := filepath.Join(c.Dir, "url")
	password := ""
	if b, err := os.ReadFile(urlFile); err == nil {
		if u, err := url.Parse(strings.TrimSpace(string(b))); err == nil {
			password, _ = u.User.Password()
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", urlFile, err)
	}
	if password == "" {
		password = pgcluster.NewPassword()
	}
	super, err := c.SuperuserURL("postgres")
	if err != nil {
		return "", err
	}
	if err := pgcluster.EnsureDatabase(ctx, super, embeddedDatabase, embeddedDatabase, password); err != nil {
		return "", err
	}
	// The parzelle role may not create roles; the superuser makes it a
	// member of the tenant role that Migrate would otherwise create.
	conn, err := pgx.Connect(ctx, super)
	if err != nil {
		return "", fmt.Errorf("connect as superuser: %w", err)
	}
	err = db.EnsureTenantRole(ctx, conn, embeddedDatabase)
	conn.Close(ctx)
	if err != nil {
		return "", err
	}
	dbURL, err := c.URL(embeddedDatabase, password, embeddedDatabase)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(urlFile, []byte(dbURL+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", urlFile, err)
	}
	return dbURL, nil
}
