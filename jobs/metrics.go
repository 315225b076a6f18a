package jobs

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/tenant"
)

// PipelineMetrics are the register pipeline's metrics per tenant.
type PipelineMetrics struct {
	messages *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewPipelineMetrics registers the pipeline's metrics with r: messages by
// outcome, the latency from acceptance to application, and (counted at
// most every 15 seconds) queue depth and open dead letters per tenant.
func NewPipelineMetrics(r prometheus.Registerer, pool *pgxpool.Pool, tenants func() *tenant.Set) *PipelineMetrics {
	m := &PipelineMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_pipeline_messages_total",
			Help: "Register inbox messages by tenant, message type and outcome (applied, dead_letter).",
		}, []string{"tenant", "type", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parzelle_pipeline_latency_seconds",
			Help:    "Time from a message's acceptance by the transport to its application to the register, per tenant.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 14),
		}, []string{"tenant"}),
	}
	if r != nil {
		r.MustRegister(m.messages, m.latency, &pipelineCollector{pool: pool, tenants: tenants})
	}
	return m
}

func (m *PipelineMetrics) done(msg *message, outcome string) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(msg.tenant, msg.messageType, outcome).Inc()
}

// applied observes the latency from acceptance to application.
func (m *PipelineMetrics) applied(msg *message) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(msg.tenant).Observe(time.Since(msg.sentAt).Seconds())
}

var (
	queueDepthDesc = prometheus.NewDesc("parzelle_pipeline_queue_depth",
		"Register inbox messages waiting or being applied, per tenant.", []string{"tenant"}, nil)
	deadLettersDesc = prometheus.NewDesc("parzelle_pipeline_dead_letters",
		"Open dead letters (neither retried nor discarded), per tenant.", []string{"tenant"}, nil)
)

// pipelineCollector counts queued jobs and open dead letters per tenant.
type pipelineCollector struct {
	pool    *pgxpool.Pool
	tenants func() *tenant.Set

	mu      sync.Mutex
	at      time.Time
	depth   map[string]float64
	letters map[string]float64
}

func (c *pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDepthDesc
	ch <- deadLettersDesc
}

func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > 15*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		depth, letters := map[string]float64{}, map[string]float64{}
		for _, t := range c.tenants().Tenants() {
			var inboxes []string
			for _, in := range t.Inboxes {
				inboxes = append(inboxes, in.Identity)
			}
			var waiting, open int64
			err := db.InTenant(ctx, c.pool, t.ID, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM xta_message WHERE tenant_id = $1 AND box = 'inbox' AND closed_at IS NULL AND account = ANY($2)),
					(SELECT count(*) FROM pipeline_dead_letter WHERE tenant_id = $1 AND resolved_at IS NULL)`, t.ID, inboxes).Scan(&waiting, &open)
			})
			if err == nil {
				depth[t.ID], letters[t.ID] = float64(waiting), float64(open)
			}
		}
		c.depth, c.letters, c.at = depth, letters, time.Now()
	}
	for t, n := range c.depth {
		ch <- prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, n, t)
	}
	for t, n := range c.letters {
		ch <- prometheus.MustNewConstMetric(deadLettersDesc, prometheus.GaugeValue, n, t)
	}
}
