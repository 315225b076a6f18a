package node

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/problem"
)

// clientHost is the host part of a remote address.
func clientHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// perClientListener closes connections beyond max open ones from one
// address as soon as they are accepted.
type perClientListener struct {
	net.Listener
	max     int
	refused prometheus.Counter
	mu      sync.Mutex
	open    map[string]int
}

func limitConns(l net.Listener, max int, refused prometheus.Counter) net.Listener {
	return &perClientListener{Listener: l, max: max, refused: refused, open: map[string]int{}}
}

func (l *perClientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientHost(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open[host] >= l.max {
			l.mu.Unlock()
			l.refused.Inc()
			c.Close()
			continue
		}
		l.open[host]++
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() { l.release(host) }}, nil
	}
}

func (l *perClientListener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
}

// countedConn gives its place back once, when closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// TooManyRequests is the problem of a client over its request rate.
var TooManyRequests = problem.Kind{Slug: "too-many-requests", Title: "Too many requests from this client", Status: http.StatusTooManyRequests}

// rateLimiter is a token bucket per client address.
type rateLimiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[string]*bucket
	lastSweep   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{rate: perSecond, burst: float64(burst), buckets: map[string]*bucket{}}
}

// take takes a token of host's bucket, or says how long until one is there.
func (l *rateLimiter) take(host string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		// Forget clients whose buckets are full again.
		for h, b := range l.buckets {
			if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
				delete(l.buckets, h)
			}
		}
		l.lastSweep = now
	}
	b, ok := l.buckets[host]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[host] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// limitRate answers 429 problem JSON to a client over its rate.
func (n *Node) limitRate(l *rateLimiter, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.take(clientHost(r.RemoteAddr), time.Now()); !ok {
			n.limited.Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			problem.Write(w, r, TooManyRequests, fmt.Sprintf("more than %g requests per second from %s: wait and send again", l.rate, clientHost(r.RemoteAddr)))
			return
		}
		h.ServeHTTP(w, r)
	})
}
