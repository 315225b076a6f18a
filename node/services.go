package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/console"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xnachweis"
	"github.com/parzelle/parzelle/xta"
)

// Services are a node's services wired together — the one assembly that
// `parzelle serve`, nodetest and every test harness use: tenant keys, the
// register, the message boxes, the register pipeline and its dead letters,
// the evidence provider, XTA, and the River client whose workers (each
// registered by the stage it belongs to) run their background work.
type Services struct {
	Keys     keys.Provider
	Keyring  *sealing.Keyring
	Schemas  *xmlschema.Registry
	Store    *register.Store
	Box      *msgbox.Store
	Pipeline *jobs.Pipeline
	Letters  *jobs.DeadLetters
	Evidence *xnachweis.Service
	XTA      *xta.Server
	OSCI     *osci.Intermediary
	// Sender forwards messages to readers behind other OSCI
	// intermediaries; Collector collects the tenants' postboxes there.
	Sender    *osci.Sender
	Collector *osci.Collector
	Jobs      *river.Client[pgx.Tx]
	Console   *console.Console

	pool      *pgxpool.Pool
	tenants   *tenant.Registry
	log       *slog.Logger
	retention config.Retention
}

// Option configures Assemble.
type Option func(*options)

type options struct {
	schemas  *xmlschema.Registry
	keys     keys.Provider
	tokens   xnachweis.TokenVerifier
	identity string
	log      *slog.Logger
	version  string
}

// WithSchemas uses the schema registry (default: the one Assemble loads from
// the configuration's schema directories).
func WithSchemas(r *xmlschema.Registry) Option { return func(o *options) { o.schemas = r } }

// WithKeys uses the key provider (default: the file provider in the
// configuration's keys directory).
func WithKeys(p keys.Provider) Option { return func(o *options) { o.keys = p } }

// WithTokenVerifier checks evidence requests' IssuedTokens with v (default:
// xnachweis.JWSTokens).
func WithTokenVerifier(v xnachweis.TokenVerifier) Option { return func(o *options) { o.tokens = v } }

// WithLogger logs to l (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithIdentity is the XTA server identity in transport reports and answer
// MessageIDs (default: https://<transport address>/xta/v3).
func WithIdentity(id string) Option { return func(o *options) { o.identity = id } }

// WithVersion names the build in the answers' produkt attributes.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// Assemble builds the node's services and mounts their endpoints on n. Start
// the returned services (Start) once n listens.
func Assemble(n *Node, reg prometheus.Registerer, opts ...Option) (*Services, error) {
	o := &options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(o)
	}
	cfg, pool, tenants, log := n.cfg, n.pool, n.tenants, o.log
	s := &Services{pool: pool, tenants: tenants, log: log}
	s.Keys = o.keys
	if s.Keys == nil {
		s.Keys = keys.NewFileProvider(cfg.Keys.Dir, func() keys.Tenants { return tenants.Current() })
	}
	reg.MustRegister(keys.NewExpiryCollector(s.Keys, log.With("service", "keys")))
	s.Schemas = o.schemas
	if s.Schemas == nil {
		var err error
		if s.Schemas, err = xmlschema.Load(cfg.Paths.Schemas, log); err != nil {
			return nil, err
		}
	}
	s.Keyring = sealing.NewKeyring(s.Keys)
	s.retention = cfg.Retention.WithDefaults()
	s.Store = register.NewStore(register.Config{Pool: pool, Keyring: s.Keyring, Tenants: tenants.Current, Log: log.With("service", "register"), Metrics: reg,
		Sealed: slices.Concat(msgbox.Tables(), jobs.DeadLetterTables(), osci.Tables())})
	s.Pipeline = &jobs.Pipeline{Pool: pool, Store: s.Store, Tenants: tenants.Current, Schemas: s.Schemas, Keys: s.Keys, Keyring: s.Keyring,
		Log: log.With("service", "pipeline"), Metrics: jobs.NewPipelineMetrics(reg, pool, tenants.Current)}
	s.Evidence = &xnachweis.Service{Pool: pool, Store: s.Store, Tenants: tenants.Current, Keys: s.Keys, Schemas: s.Schemas, Tokens: o.tokens,
		Log: log.With("service", "xnachweis"), Metrics: xnachweis.NewMetrics(reg, tenants.Current)}
	if o.version != "" {
		xnachweis.Product.Version = o.version
	}
	evidenceInbox := &xnachweis.XTAInbox{Service: s.Evidence}
	s.OSCI = &osci.Intermediary{Pool: pool, Tenants: tenants.Current, Dialogs: &osci.Dialogs{Pool: pool}, Log: log.With("service", "osci"),
		Metrics: osci.NewMetrics(reg), Schemas: s.Schemas, Keyring: s.Keyring}
	passive := &osci.Recipients{Intermediary: s.OSCI}
	directory := &xta.StaticDirectory{Tenants: tenants.Current, File: cfg.Paths.Directory}
	senderHTTP, err := osciClientHTTP(cfg.OSCI)
	if err != nil {
		return nil, err
	}
	s.Sender = &osci.Sender{Pool: pool, Keyring: s.Keyring, Tenants: tenants.Current, Directory: directory, HTTP: senderHTTP, Log: log.With("service", "osci-sender")}
	boxes := msgbox.Config{Pool: pool, Tenants: tenants.Current, Keyring: s.Keyring, Consumer: msgbox.Consumers{s.Pipeline, evidenceInbox, passive},
		Log: log.With("service", "msgbox")}
	if cfg.Paths.Directory != "" {
		// Without a directory there is no route to readers elsewhere:
		// their messages stay FORWARDING_PENDING.
		boxes.Forwarder = s.Sender
	}
	s.Box = msgbox.New(boxes)
	s.Sender.Box = s.Box
	s.Collector = &osci.Collector{Sender: s.Sender, Directory: directory}
	s.OSCI.Box = s.Box
	s.Pipeline.Box, evidenceInbox.Box = s.Box, s.Box
	identity := o.identity
	if identity == "" {
		identity = "https://" + cfg.Listen.Transport + "/xta/v3"
	}
	s.XTA = xta.NewServer(xta.Config{Pool: pool, Box: s.Box, Tenants: tenants.Current, Principal: PrincipalFrom, Schemas: s.Schemas,
		Directory: directory, Log: log.With("service", "xta"), Metrics: reg, Identity: identity})
	evidenceInbox.XTA = s.XTA

	workers := river.NewWorkers()
	s.Box.AddWorkers(workers)
	s.Store.AddWorkers(workers)
	s.Pipeline.AddWorkers(workers)
	evidenceInbox.AddWorkers(workers)
	passive.AddWorkers(workers)
	s.Sender.AddWorkers(workers)
	s.Collector.AddWorkers(workers)
	if s.Jobs, err = jobs.NewClient(pool, workers, log.With("service", "jobs")); err != nil {
		return nil, err
	}
	s.Box.SetJobClient(s.Jobs)
	evidenceInbox.SetClient(s.Jobs)
	passive.SetClient(s.Jobs)
	s.Sender.SetClient(s.Jobs)
	s.Collector.SetClient(s.Jobs)
	if err := s.Pipeline.SetClient(s.Jobs); err != nil {
		return nil, err
	}
	s.Letters = &jobs.DeadLetters{Pool: pool, Jobs: s.Jobs, Box: s.Box, Keyring: s.Keyring, Retriers: map[string]func(context.Context, pgx.Tx, string, jobs.DeadLetter) error{
		jobs.StepForward: passive.Retry, jobs.StepSend: s.Sender.Retry, jobs.StepCollect: s.Collector.Retry}}

	if s.Console, err = console.New(console.Config{Console: cfg.Console, Pool: pool, Tenants: tenants, Letters: s.Letters, Box: s.Box, Store: s.Store,
		Keys: s.Keys, Metrics: n.reg, Log: log.With("service", "console"), Ready: n.ready}); err != nil {
		return nil, err
	}
	n.HandleOps(console.Prefix, s.Console)

	s.XTA.Mount(n.HandleTransport)
	s.OSCI.Mount(n.HandleTransport)
	register.NewAPI(s.Store, PrincipalFrom).Mount(n.HandleTransport)
	n.HandleTransport(xnachweis.Path, s.Evidence.Handler(PrincipalFrom))
	return s, nil
}

// Start starts the River client and the node's background work, until ctx
// ends: the certificate expiry watch, the expiry of access logs, evidence
// tokens, finished transport messages and resolved dead letters, the
// erasure of register data past retention, and the sealing of data an
// earlier version stored in plaintext.
func (s *Services) Start(ctx context.Context) error {
	if err := s.Jobs.Start(ctx); err != nil {
		return fmt.Errorf("start jobs: %w", err)
	}
	go s.Console.Run(ctx)
	go keys.WatchExpiry(ctx, s.Keys, s.log.With("service", "keys"), 24*time.Hour)
	go every(ctx, time.Hour, func(ctx context.Context) {
		n, err := s.Store.Expire(ctx)
		switch {
		case err != nil:
			s.log.Warn("expire register logs", "service", "register", "error", err)
		case n > 0:
			s.log.Info("access log entries older than two years deleted", "service", "register", "entries", n)
		}
		if err := s.Evidence.Expire(ctx); err != nil {
			s.log.Warn("expire evidence tokens", "service", "xnachweis", "error", err)
		}
		var ids []string
		for _, t := range s.tenants.Current().Tenants() {
			ids = append(ids, t.ID)
		}
		if n, err := s.Letters.Expire(ctx, ids, time.Now().Add(-s.retention.DeadLetters)); err != nil {
			s.log.Warn("expire resolved dead letters", "service", "pipeline", "error", err)
		} else if n > 0 {
			s.log.Info("resolved dead letters past retention deleted", "service", "pipeline", "dead_letters", n)
		}
		if err := s.OSCI.Expire(ctx, ids); err != nil {
			s.log.Warn("expire OSCI dialogs and MessageIds", "service", "osci", "error", err)
		}
		if n, err := s.Box.Expire(ctx, ids, time.Now().Add(-s.retention.Messages)); err != nil {
			s.log.Warn("expire transport messages", "service", "msgbox", "error", err)
		} else if n > 0 {
			s.log.Info("transport messages past retention deleted", "service", "msgbox", "messages", n)
		}
		r, err := s.Store.EraseExpired(ctx)
		switch {
		case err != nil:
			s.log.Warn("erase register data past retention", "service", "register", "error", err)
		case r.Records+r.Versions > 0:
			s.log.Info("register data past retention erased", "service", "register", "records", r.Records, "versions", r.Versions)
		}
	})
	go every(ctx, time.Minute, func(ctx context.Context) {
		if err := s.Collector.Enqueue(ctx); err != nil {
			s.log.Warn("enqueue the collection of OSCI postboxes", "service", "osci", "error", err)
		}
	})
	if err := s.Store.SealPlaintext(ctx, s.Jobs); err != nil {
		s.log.Warn("seal data stored in plaintext", "service", "register", "error", err)
	}
	return nil
}

// Stop stops the River client, waiting up to ten seconds for running jobs.
func (s *Services) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.Jobs.Stop(ctx)
}

// every runs fn at once and then every interval until ctx ends, each run
// bounded by ten minutes.
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	for {
		runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		fn(runCtx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// osciClientHTTP is the HTTP client the node reaches other OSCI
// intermediaries with: its client certificate and the roots of their
// server certificates from the config (osci:), else none and the
// system's.
func osciClientHTTP(c config.OSCIClient) (*http.Client, error) {
	tcfg, _, err := pki.ClientTLS(c.ClientCert, c.ClientKey, c.ServerCA)
	if err != nil {
		return nil, fmt.Errorf("osci (clientCert, clientKey, serverCA): %w", err)
	}
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tcfg}}, nil
}
