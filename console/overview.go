package console

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
)

// rateSampler keeps the pipeline's per-tenant message counters at regular
// samples, so that the overview can chart messages per minute from the
// same numbers /metrics exports.
type rateSampler struct {
	g        prometheus.Gatherer
	interval time.Duration
	keep     int

	mu      sync.Mutex
	samples []rateSample
}

type rateSample struct {
	at     time.Time
	totals map[string]float64 // per tenant, every outcome
}

func newRateSampler(g prometheus.Gatherer, interval time.Duration, keep int) *rateSampler {
	return &rateSampler{g: g, interval: interval, keep: keep}
}

func (s *rateSampler) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.sample(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *rateSampler) sample(now time.Time) {
	if s.g == nil {
		return
	}
	fams, err := s.g.Gather()
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, rateSample{at: now, totals: totals(fams)})
	if len(s.samples) > s.keep {
		s.samples = s.samples[len(s.samples)-s.keep:]
	}
}

// totals are the pipeline's messages per tenant, every outcome.
func totals(fams []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range family(fams, "parzelle_pipeline_messages_total") {
		out[label(m, "tenant")] += m.GetCounter().GetValue()
	}
	return out
}

// perMinute is the tenant's messages per minute between the samples and
// the live one, oldest first.
func (s *rateSampler) perMinute(tenantID string, live rateSample) []float64 {
	s.mu.Lock()
	samples := append(append([]rateSample{}, s.samples...), live)
	s.mu.Unlock()
	var out []float64
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if d := b.at.Sub(a.at).Minutes(); d > 0 {
			out = append(out, (b.totals[tenantID]-a.totals[tenantID])/d)
		}
	}
	return out
}

func family(fams []*dto.MetricFamily, name string) []*dto.Metric {
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// quantile estimates the q-quantile of a histogram by linear interpolation
// within its bucket, as PromQL's histogram_quantile does; NaN without
// observations.
func quantile(h *dto.Histogram, q float64) float64 {
	n := float64(h.GetSampleCount())
	if n == 0 {
		return math.NaN()
	}
	rank, prevBound, prevCount := q*n, 0.0, 0.0
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if c >= rank {
			if c == prevCount {
				return b.GetUpperBound()
			}
			return prevBound + (b.GetUpperBound()-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b.GetUpperBound(), c
	}
	return prevBound
}

// tenantOverview is one tenant's row of the overview.
type tenantOverview struct {
	ID, Name           string
	PerMinute          string
	P50, P99           string
	Queue, Open, Stuck int
	Chart              template.HTML
	// Insecure is an evidence provider that does not check IssuedTokens.
	Insecure bool
	ByCause  map[string]int
	Expiring []keys.Certificate
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	fams, err := c.Metrics.Gather()
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	stuck, err := c.stuckJobs(ctx)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	certs, err := c.Keys.Certificates(ctx)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	now := c.Now()
	live := rateSample{at: now, totals: totals(fams)}
	var rows []tenantOverview
	for _, t := range c.visibleTenants(s) {
		o := tenantOverview{ID: t.ID, Name: t.Name, P50: "–", P99: "–", Stuck: stuck[t.ID], Insecure: t.EvidenceProvider() != nil && t.EvidenceProvider().InsecureTestMode}
		for _, m := range family(fams, "parzelle_pipeline_queue_depth") {
			if label(m, "tenant") == t.ID {
				o.Queue = int(m.GetGauge().GetValue())
			}
		}
		for _, m := range family(fams, "parzelle_pipeline_latency_seconds") {
			if label(m, "tenant") == t.ID {
				if p := quantile(m.GetHistogram(), 0.5); !math.IsNaN(p) {
					o.P50, o.P99 = seconds(p), seconds(quantile(m.GetHistogram(), 0.99))
				}
			}
		}
		rates := c.rates.perMinute(t.ID, live)
		o.PerMinute = "–"
		if len(rates) > 0 {
			o.PerMinute = fmt.Sprintf("%.0f", rates[len(rates)-1])
		}
		o.Chart = barChart(rates)
		if o.ByCause, err = c.Letters.CountByCause(ctx, t.ID, jobs.DeadLetterFilter{}); err != nil {
			c.internal(w, r, s, err)
			return
		}
		for _, n := range o.ByCause {
			o.Open += n
		}
		for _, cert := range certs {
			if cert.Tenant == t.ID && cert.Current && cert.Left(now) < 30*24*time.Hour {
				o.Expiring = append(o.Expiring, cert)
			}
		}
		rows = append(rows, o)
	}
	status, checks := "ready", map[string]string{}
	if c.Ready != nil {
		status, checks = c.Ready(ctx)
	}
	c.render(w, r, s, http.StatusOK, "overview", "Übersicht", map[string]any{"Tenants": rows, "Status": status, "Checks": checks, "Problems": c.problems(s)})
}

// problems are the rejected tenant files an operator should see.
func (c *Console) problems(s *session) []string {
	if !s.operator() {
		return nil
	}
	var out []string
	for _, p := range c.Tenants.Problems() {
		out = append(out, fmt.Sprint(p))
	}
	return out
}

// stuckJobs counts per tenant the River jobs that have run or waited for
// more than five minutes: a job that should have finished long ago.
func (c *Console) stuckJobs(ctx context.Context) (map[string]int, error) {
	rows, err := c.Pool.Query(ctx, `SELECT coalesce(args->>'tenant', ''), count(*) FROM river_job
		WHERE (state = 'running' AND attempted_at < now() - interval '5 minutes')
		   OR (state IN ('available', 'retryable') AND scheduled_at < now() - interval '5 minutes')
		GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("console: stuck jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

func seconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.1f s", s)
}

// barChart draws the values as a small SVG bar chart.
func barChart(values []float64) template.HTML {
	const w, h = 240, 40
	if len(values) == 0 {
		return template.HTML(fmt.Sprintf(`<svg class="chart" width="%d" height="%d" role="img" aria-label="no data yet"><text x="4" y="24">–</text></svg>`, w, h))
	}
	top := 1.0
	for _, v := range values {
		top = math.Max(top, v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" width="%d" height="%d" role="img" aria-label="messages per minute, maximum %.0f">`, w, h, top)
	bw := float64(w) / float64(len(values))
	for i, v := range values {
		bh := math.Max(1, v/top*float64(h-2))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%.0f/min</title></rect>`, float64(i)*bw, float64(h)-bh, math.Max(1, bw-1), bh, v)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// sortedCauses lists a count map's causes by count, largest first.
func sortedCauses(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return m[out[i]] > m[out[j]] || m[out[i]] == m[out[j]] && out[i] < out[j] })
	return out
}
