package node

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parzelle/parzelle/problem"
)

func (n *Node) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	for _, rt := range n.opsRoutes {
		mux.Handle(rt.pattern, rt.handler)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.NotFound, "no page at "+r.URL.Path)
	})
	return mux
}

// readiness is what /readyz answers.
type readiness struct {
	Status string            `json:"status"` // "ready" or "unready"
	Checks map[string]string `json:"checks"`
}

func (n *Node) checkReady(ctx context.Context) readiness {
	rd := readiness{Status: "ready", Checks: map[string]string{}}
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.pool.Ping(pingCtx); err != nil {
		rd.Status, rd.Checks["database"] = "unready", "unreachable: "+err.Error()
	} else {
		rd.Checks["database"] = "ok"
	}
	rd.Checks["tenants"] = "ok"
	if len(n.tenants.Current().Tenants()) == 0 {
		rd.Status, rd.Checks["tenants"] = "unready", "no tenant is configured in "+n.tenants.Dir()
	}
	return rd
}

// ready is the node's readiness for the console.
func (n *Node) ready(ctx context.Context) (string, map[string]string) {
	rd := n.checkReady(ctx)
	return rd.Status, rd.Checks
}

// readyz fails (503) while the database is unreachable or no tenant is
// configured; the body says which check failed.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	rd := n.checkReady(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if rd.Status != "ready" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rd)
}
