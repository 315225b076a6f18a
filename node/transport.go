package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"

	"github.com/parzelle/parzelle/problem"
	"github.com/parzelle/parzelle/tenant"
)

// tlsConfig requires a client certificate that chains to a client CA of
// some tenant; the pool is taken from the live tenant set at each handshake,
// so a new tenant's CA works without a restart.
func (n *Node) tlsConfig(cert tls.Certificate) *tls.Config {
	base := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			c.ClientCAs = n.tenants.Current().ClientCAs()
			return c, nil
		},
	}
}

type principalKey struct{}

// PrincipalFrom returns the authenticated client of a transport request.
func PrincipalFrom(ctx context.Context) *tenant.Principal {
	p, _ := ctx.Value(principalKey{}).(*tenant.Principal)
	return p
}

// authenticate maps the client certificate to its tenant grants; a
// certificate that chains to a trusted CA but that no tenant lists is
// refused here.
func (n *Node) authenticate(next http.Handler) http.Handler {
	return n.identify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if PrincipalFrom(r.Context()) == nil {
			problem.Write(w, r, problem.UnknownClient, "the client certificate is not assigned to any tenant of this node")
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// HandleTransport adds a protocol endpoint to the transport listener; call
// it before Listen. The handler finds the client's principal with
// PrincipalFrom, nil when no tenant lists the certificate: it refuses such
// clients itself, in its protocol's own terms.
func (n *Node) HandleTransport(pattern string, h http.Handler) {
	n.routes = append(n.routes, route{pattern, h})
}

// HandleOps adds a handler to the ops listener (the console); call it
// before Listen.
func (n *Node) HandleOps(pattern string, h http.Handler) {
	n.opsRoutes = append(n.opsRoutes, route{pattern, h})
}

type route struct {
	pattern string
	handler http.Handler
}

// identify adds the client's principal, if any, to the request context.
func (n *Node) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		info, _ := r.Context().Value(requestInfoKey{}).(*requestInfo)
		p, err := n.tenants.Current().Authenticate(r.TLS.PeerCertificates, n.now())
		if err != nil {
			subject := r.TLS.PeerCertificates[0].Subject.String()
			if info != nil {
				info.subject = subject
			}
			n.log.Warn("client certificate not assigned to a tenant", "subject", subject, "remote", r.RemoteAddr, "error", err)
			next.ServeHTTP(w, r)
			return
		}
		if info != nil {
			info.subject, info.tenant = p.Subject, grantTenant(p)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func grantTenant(p *tenant.Principal) string {
	t := p.Grants[0].Tenant
	for _, g := range p.Grants[1:] {
		if g.Tenant != t {
			return "multiple"
		}
	}
	return t
}

// transportHandler routes transport requests; every route, the fallback
// included, serves authenticated clients only.
func (n *Node) transportHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /whoami", n.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(PrincipalFrom(r.Context()))
	})))
	for _, rt := range n.routes {
		mux.Handle(rt.pattern, n.identify(rt.handler))
	}
	mux.Handle("/", n.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.NotFound, "no endpoint at "+r.URL.Path)
	})))
	return mux
}
