package node

import (
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parzelle/parzelle/problem"
	"github.com/parzelle/parzelle/tenant"
)

//go:embed console/*.html
var consoleFiles embed.FS

var consolePage = template.Must(template.ParseFS(consoleFiles, "console/status.html"))

func (n *Node) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.HandleFunc("GET /{$}", n.console)
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

// console shows operators the state of the node: readiness, tenants with
// their applied configuration versions, and rejected tenant files.
func (n *Node) console(w http.ResponseWriter, r *http.Request) {
	set := n.tenants.Current()
	type row struct {
		*tenant.Config
		Version int
	}
	var rows []row
	for _, c := range set.Tenants() {
		rows = append(rows, row{c, set.Version(c.ID)})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	err := consolePage.Execute(w, map[string]any{
		"Ready":    n.checkReady(r.Context()),
		"Tenants":  rows,
		"Problems": n.tenants.Problems(),
		"Dir":      n.tenants.Dir(),
		"Now":      n.now().Format(time.RFC3339),
	})
	if err != nil {
		n.log.Error("render console", "error", err)
	}
}
