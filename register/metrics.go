package register

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/db"
)

// metrics are the register's per-tenant counters and the record gauge.
type metrics struct {
	ops                *prometheus.CounterVec
	denials            *prometheus.CounterVec
	reencryptRemaining *prometheus.GaugeVec
	plaintextRemaining *prometheus.GaugeVec
	erasures           *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_register_operations_total",
			Help: "Register operations by tenant, register, operation (read, search, export, write, erase) and outcome (granted, denied, failed).",
		}, []string{"tenant", "register", "operation", "outcome"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_register_denials_total",
			Help: "Register operations refused by the tenant's policy (or aimed at another tenant), by tenant, register and operation.",
		}, []string{"tenant", "register", "operation"}),
		reencryptRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parzelle_register_reencrypt_remaining",
			Help: "Rows still encrypted under an older data key while a key rotation's re-encryption runs, per tenant.",
		}, []string{"tenant"}),
		plaintextRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parzelle_plaintext_rows_remaining",
			Help: "Rows an earlier version stored in plaintext (message content, report texts, dead letters) that are still to be sealed, per tenant.",
		}, []string{"tenant"}),
		erasures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_register_retention_erased_total",
			Help: "Records (with what was merged into them) and versions the register's retention erased, per tenant, register and kind (records, versions).",
		}, []string{"tenant", "register", "kind"}),
	}
}

func (m *metrics) register(r prometheus.Registerer, s *Store) {
	r.MustRegister(m.ops, m.denials, m.reencryptRemaining, m.plaintextRemaining, m.erasures, &recordCollector{store: s})
}

func (m *metrics) done(tenantID, register, operation, outcome string) {
	m.ops.WithLabelValues(tenantID, register, operation, outcome).Inc()
}

func (m *metrics) erased(tenantID, register, kind string, n int64) {
	m.erasures.WithLabelValues(tenantID, register, kind).Add(float64(n))
}

func (m *metrics) denied(tenantID, register, operation string) {
	m.ops.WithLabelValues(tenantID, register, operation, OutcomeDenied).Inc()
	m.denials.WithLabelValues(tenantID, register, operation).Inc()
}

var recordsDesc = prometheus.NewDesc("parzelle_register_records",
	"Records (not deleted) per tenant and register, counted at most once a minute.", []string{"tenant", "register"}, nil)

// recordCollector counts each tenant's records, in the tenant's
// transaction, caching the counts for a minute so that scrapes stay cheap.
type recordCollector struct {
	store *Store

	mu     sync.Mutex
	at     time.Time
	counts map[[2]string]float64
}

func (c *recordCollector) Describe(ch chan<- *prometheus.Desc) { ch <- recordsDesc }

func (c *recordCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > time.Minute {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		counts := map[[2]string]float64{}
		for _, t := range c.store.tenants().Tenants() {
			for _, r := range t.Registers() {
				counts[[2]string{t.ID, r.Name}] = 0
			}
			err := db.InTenant(ctx, c.store.pool, t.ID, func(tx pgx.Tx) error {
				rows, err := tx.Query(ctx, `SELECT register, count(*) FROM register_record WHERE tenant_id = $1 AND deleted_at IS NULL GROUP BY register`, t.ID)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var reg string
					var n int64
					if err := rows.Scan(&reg, &n); err != nil {
						return err
					}
					counts[[2]string{t.ID, reg}] = float64(n)
				}
				return rows.Err()
			})
			if err != nil {
				c.store.log.Warn("count register records", "tenant", t.ID, "error", err)
			}
		}
		c.counts, c.at = counts, time.Now()
	}
	for k, n := range c.counts {
		ch <- prometheus.MustNewConstMetric(recordsDesc, prometheus.GaugeValue, n, k[0], k[1])
	}
}
