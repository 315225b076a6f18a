package xnachweis

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/tenant"
)

// Metrics are the evidence service's metrics. Labels take only names the
// tenant files declare (requesters, evidence types); anything a request
// invents is "-".
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the metrics with r: requests by tenant, requester,
// evidence type and outcome (answered or the error code), their duration,
// and which tenants run in insecure test mode (IssuedTokens unchecked).
func NewMetrics(r prometheus.Registerer, tenants func() *tenant.Set) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_xnachweis_requests_total",
			Help: "Evidence requests by tenant, requester, evidence type and outcome (answered, or the XN_… code of the error response).",
		}, []string{"tenant", "requester", "evidence_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parzelle_xnachweis_request_duration_seconds",
			Help:    "Time to answer an evidence request, by tenant, requester and evidence type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"tenant", "requester", "evidence_type"}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.duration, &insecureCollector{tenants: tenants})
	}
	return m
}

func (m *Metrics) observe(x *exchange, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	requester, typ := "-", "-"
	if x.requester != nil {
		requester = x.requester.Agent().String()
	}
	if x.typ != nil {
		typ = x.typ.ID
	}
	m.requests.WithLabelValues(x.tenant.ID, requester, typ, outcome).Inc()
	m.duration.WithLabelValues(x.tenant.ID, requester, typ).Observe(d.Seconds())
}

var insecureDesc = prometheus.NewDesc("parzelle_xnachweis_insecure_test_mode",
	"1 for a tenant whose evidence requests are answered without checking their IssuedToken (evidence.insecureTestMode), else 0.", []string{"tenant"}, nil)

// insecureCollector reports each evidence-providing tenant's test mode.
type insecureCollector struct{ tenants func() *tenant.Set }

func (c *insecureCollector) Describe(ch chan<- *prometheus.Desc) { ch <- insecureDesc }

func (c *insecureCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.tenants().Tenants() {
		if e := t.EvidenceProvider(); e != nil {
			v := 0.0
			if e.InsecureTestMode {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(insecureDesc, prometheus.GaugeValue, v, t.ID)
		}
	}
}
