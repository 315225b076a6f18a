// Package node runs a Parzelle node's listeners: the HTTPS transport
// listener with client-certificate authentication, and the operations
// listener with the console, /metrics, /healthz and /readyz.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/tenant"
)

// Node is one running Parzelle node.
type Node struct {
	cfg     *config.Node
	pool    *pgxpool.Pool
	tenants *tenant.Registry
	log     *slog.Logger
	reg     *prometheus.Registry
	now     func() time.Time

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// limited counts requests refused for their rate, refused connections
	// beyond a client's share.
	limited, refused prometheus.Counter

	routes, opsRoutes  []route
	transportLn, opsLn net.Listener
	transport, ops     *http.Server
}

// New assembles a node from its configuration, database pool, tenant
// registry and the metrics registry the registry's collectors live in.
func New(cfg *config.Node, pool *pgxpool.Pool, tenants *tenant.Registry, reg *prometheus.Registry, log *slog.Logger) *Node {
	n := &Node{
		cfg: cfg, pool: pool, tenants: tenants, log: log, reg: reg, now: time.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_http_requests_total", Help: "HTTP requests by listener, route, status code and tenant of the client certificate (empty: none or unknown; multiple: a certificate of several tenants).",
		}, []string{"listener", "route", "code", "tenant"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parzelle_http_request_duration_seconds", Help: "HTTP request duration by listener and route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"listener", "route"}),
	}
	n.limited = prometheus.NewCounter(prometheus.CounterOpts{Name: "parzelle_http_rate_limited_total", Help: "Requests refused (429) because their client sent more than http.requestsPerSecond."})
	n.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "parzelle_http_connections_refused_total", Help: "Connections closed at once because their client had http.maxConnsPerClient open."})
	reg.MustRegister(n.requests, n.duration, n.limited, n.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return n
}

// NewMetricsRegistry returns the registry a node's collectors live in, with
// the build information of this binary.
func NewMetricsRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parzelle_build_info", Help: "Always 1; the version label names the running build.",
		ConstLabels: prometheus.Labels{"version": version},
	}, func() float64 { return 1 }))
	return reg
}

// Addrs are the addresses the listeners are bound to.
type Addrs struct {
	Transport string
	Ops       string
}

// Listen binds both listeners; the transport listener loads the server
// certificate now, so that a bad one stops the node before it serves.
func (n *Node) Listen() (Addrs, error) {
	cert, err := tls.LoadX509KeyPair(n.cfg.TLS.Cert, n.cfg.TLS.Key)
	if err != nil {
		return Addrs{}, fmt.Errorf("node: load server certificate %s: %w", n.cfg.TLS.Cert, err)
	}
	limits := n.cfg.HTTP.WithDefaults()
	rate := newRateLimiter(limits.RequestsPerSecond, limits.Burst)
	errorLog := slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)
	n.transport = &http.Server{
		Handler:           n.instrument("transport", n.limitRate(rate, n.transportHandler())),
		TLSConfig:         n.tlsConfig(cert),
		ReadHeaderTimeout: limits.HeaderTimeout,
		ReadTimeout:       limits.BodyTimeout,
		IdleTimeout:       limits.IdleTimeout,
		ErrorLog:          errorLog,
	}
	n.ops = &http.Server{
		Handler:           n.instrument("ops", n.limitRate(rate, n.opsHandler())),
		ReadHeaderTimeout: limits.HeaderTimeout,
		ReadTimeout:       limits.BodyTimeout,
		IdleTimeout:       limits.IdleTimeout,
		ErrorLog:          errorLog,
	}
	if n.transportLn, err = net.Listen("tcp", n.cfg.Listen.Transport); err != nil {
		return Addrs{}, fmt.Errorf("node: transport listener: %w", err)
	}
	if n.opsLn, err = net.Listen("tcp", n.cfg.Listen.Ops); err != nil {
		n.transportLn.Close()
		return Addrs{}, fmt.Errorf("node: ops listener: %w", err)
	}
	n.transportLn = limitConns(n.transportLn, limits.MaxConnsPerClient, n.refused)
	n.opsLn = limitConns(n.opsLn, limits.MaxConnsPerClient, n.refused)
	return Addrs{Transport: n.transportLn.Addr().String(), Ops: n.opsLn.Addr().String()}, nil
}

// Serve serves both listeners until ctx ends, then shuts down gracefully:
// requests in flight get up to 15 seconds to finish.
func (n *Node) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- n.transport.ServeTLS(n.transportLn, "", "") }()
	go func() { errc <- n.ops.Serve(n.opsLn) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("node: listener stopped: %w", err)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, s := range []*http.Server{n.transport, n.ops} {
		if serr := s.Shutdown(shutCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("node: shut down: %w", serr))
		}
	}
	return err
}

// requestInfo is what the handlers learn about a request that the
// instrumentation around them reports.
type requestInfo struct {
	tenant  string
	subject string
}

type requestInfoKey struct{}

// instrument counts and times requests per route pattern and tenant, and
// logs each transport request (ops requests at debug level).
func (n *Node) instrument(listener string, h http.Handler) http.Handler {
	level := slog.LevelInfo
	if listener == "ops" {
		level = slog.LevelDebug
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		h.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		n.requests.WithLabelValues(listener, route, strconv.Itoa(sw.status), info.tenant).Inc()
		n.duration.WithLabelValues(listener, route).Observe(elapsed.Seconds())
		n.log.Log(r.Context(), level, "request", "listener", listener, "method", r.Method, "path", r.URL.Path,
			"status", sw.status, "duration_ms", elapsed.Milliseconds(), "tenant", info.tenant, "client", info.subject, "remote", r.RemoteAddr)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
