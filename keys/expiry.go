package keys

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ExpiryWarning is how far ahead of its expiry a certificate is warned
// about.
const ExpiryWarning = 30 * 24 * time.Hour

var expiryDesc = prometheus.NewDesc("parzelle_certificate_expiry_seconds",
	"Seconds until the soonest-expiring certificate of a tenant and usage expires (negative once expired). Kept-but-unused keys (previous decryption keys, standby signing keys) are not counted.",
	[]string{"tenant", "usage"}, nil)

// ExpiryCollector exports parzelle_certificate_expiry_seconds{tenant,usage},
// computed at each scrape from the provider's current certificates, so a
// rotated certificate shows at the next scrape.
type ExpiryCollector struct {
	p   Provider
	now func() time.Time
	log *slog.Logger
}

// NewExpiryCollector returns a collector over p's certificates; register it
// with the node's metrics registry.
func NewExpiryCollector(p Provider, log *slog.Logger) *ExpiryCollector {
	return &ExpiryCollector{p: p, now: time.Now, log: log}
}

// Describe implements prometheus.Collector.
func (c *ExpiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

// Collect implements prometheus.Collector.
func (c *ExpiryCollector) Collect(ch chan<- prometheus.Metric) {
	certs, err := c.p.Certificates(context.Background())
	if err != nil {
		c.log.Error("cannot list certificates for the expiry metric", "error", err)
		return
	}
	type key struct{ tenant, usage string }
	soonest := map[key]time.Time{}
	var order []key
	for _, cert := range certs {
		if !cert.Current {
			continue
		}
		k := key{cert.Tenant, cert.Usage}
		at, seen := soonest[k]
		if !seen {
			order = append(order, k)
		}
		if !seen || cert.Cert.NotAfter.Before(at) {
			soonest[k] = cert.Cert.NotAfter
		}
	}
	now := c.now()
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, soonest[k].Sub(now).Seconds(), k.tenant, k.usage)
	}
}

// CheckExpiry logs an ERROR for every monitored certificate of p that has
// expired at now and a WARN for every one that expires within
// ExpiryWarning, and returns how many it logged.
func CheckExpiry(ctx context.Context, p Provider, log *slog.Logger, now time.Time) int {
	certs, err := p.Certificates(ctx)
	if err != nil {
		log.Error("cannot list certificates to check their expiry", "error", err)
		return 0
	}
	n := 0
	for _, c := range certs {
		left := c.Left(now)
		if !c.Current || left > ExpiryWarning {
			continue
		}
		attrs := []any{"tenant", c.Tenant, "usage", c.Label(), "subject", c.Cert.Subject.String(),
			"not_after", c.Cert.NotAfter.UTC().Format(time.RFC3339), "days_left", int(left.Hours() / 24)}
		if left <= 0 {
			log.Error("certificate has expired; replace it in the tenant file", attrs...)
		} else {
			log.Warn("certificate expires soon; rotate it in the tenant file", attrs...)
		}
		n++
	}
	return n
}

// WatchExpiry runs CheckExpiry at once and then every interval (a day in
// the node) until ctx ends.
func WatchExpiry(ctx context.Context, p Provider, log *slog.Logger, interval time.Duration) {
	CheckExpiry(ctx, p, log, time.Now())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			CheckExpiry(ctx, p, log, time.Now())
		}
	}
}
