package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/node"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xnachweis"
	"github.com/parzelle/parzelle/xta"
)

// mountServices puts the protocol services on the node and returns the
// River client that runs their background work (not yet started).
func mountServices(cfg *config.Node, pool *pgxpool.Pool, tenants *tenant.Registry, n *node.Node, reg prometheus.Registerer, log *slog.Logger) (*river.Client[pgx.Tx], error) {
	// Tenant keys come from the live tenant set, so a rotated key is used
	// after the next tenant reload; their expiry is a metric and, 30 days
	// ahead, a daily warning (for the life of the process).
	keyProvider := keys.NewFileProvider(cfg.Keys.Dir, func() keys.Tenants { return tenants.Current() })
	reg.MustRegister(keys.NewExpiryCollector(keyProvider, log.With("service", "keys")))
	go keys.WatchExpiry(context.Background(), keyProvider, log.With("service", "keys"), 24*time.Hour)

	schemas, err := xmlschema.Load(cfg.Paths.Schemas, log)
	if err != nil {
		return nil, err
	}
	store := register.NewStore(register.Config{Pool: pool, Keys: keyProvider, Tenants: tenants.Current, Log: log.With("service", "register"), Metrics: reg})
	register.NewAPI(store, node.PrincipalFrom).Mount(n.HandleTransport)
	go expireRegisterLogs(store, log.With("service", "register"))
	pipeline := &jobs.Pipeline{Pool: pool, Store: store, Tenants: tenants.Current, Schemas: schemas, Keys: keyProvider, Log: log.With("service", "pipeline"),
		Metrics: jobs.NewPipelineMetrics(reg, pool, tenants.Current)}
	evidence := &xnachweis.Service{Pool: pool, Store: store, Tenants: tenants.Current, Keys: keyProvider, Schemas: schemas,
		Log: log.With("service", "xnachweis"), Metrics: xnachweis.NewMetrics(reg, tenants.Current)}
	xnachweis.Product.Version = version
	evidenceInbox := &xnachweis.XTAInbox{Service: evidence}
	xs := xta.NewServer(xta.Config{
		Pool: pool, Tenants: tenants.Current, Principal: node.PrincipalFrom, Schemas: schemas,
		Directory: &xta.StaticDirectory{Tenants: tenants.Current, File: cfg.Paths.Directory},
		Log:       log.With("service", "xta"), Metrics: reg, Identity: "https://" + cfg.Listen.Transport + "/xta/v3",
		Inbox: xta.Consumers{pipeline, evidenceInbox},
	})
	evidenceInbox.XTA = xs
	n.HandleTransport(xnachweis.Path, evidence.Handler(node.PrincipalFrom))
	go expireEvidenceTokens(evidence, log.With("service", "xnachweis"))

	workers := river.NewWorkers()
	xs.AddWorkers(workers)
	river.AddWorker(workers, &register.ReencryptWorker{Store: store})
	river.AddWorker(workers, &jobs.PipelineWorker{Pipeline: pipeline})
	river.AddWorker(workers, &xnachweis.RequestWorker{Inbox: evidenceInbox})
	client, err := jobs.NewClient(pool, workers, log.With("service", "jobs"))
	if err != nil {
		return nil, err
	}
	xs.SetJobClient(client)
	evidenceInbox.SetClient(client)
	if err := pipeline.SetClient(client); err != nil {
		return nil, err
	}
	xs.Mount(n.HandleTransport)
	return client, nil
}

// expireEvidenceTokens forgets the ids of expired IssuedTokens and old
// daily quota counts, once an hour for the life of the process.
func expireEvidenceTokens(s *xnachweis.Service, log *slog.Logger) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if err := s.Expire(ctx); err != nil {
			log.Warn("expire evidence tokens", "error", err)
		}
		cancel()
		time.Sleep(time.Hour)
	}
}

// expireRegisterLogs deletes access-log entries past their two years and
// stale idempotency keys, once an hour for the life of the process.
func expireRegisterLogs(store *register.Store, log *slog.Logger) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		n, err := store.Expire(ctx)
		cancel()
		switch {
		case err != nil:
			log.Warn("expire register logs", "error", err)
		case n > 0:
			log.Info("access log entries older than two years deleted", "entries", n)
		}
		time.Sleep(time.Hour)
	}
}
