package xta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlschema"
)

// The three ports of XTA.wsdl and the paths they are served at.
const (
	PortManagement = "/xta/v3/management"
	PortSend       = "/xta/v3/send"
	PortMsgBox     = "/xta/v3/msgbox"
)

// MaxContent is the container limit of XTA 2: 40 MB of content per message.
const MaxContent = 40 << 20

const osciMsgTypes = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/"

// operation is one operation of XTA.wsdl: the port it is bound to, its
// Action and the body element its input carries (zero: an empty body).
type operation struct {
	name   string
	port   string
	action string
	input  xml.Name
	handle func(s *Server, ctx context.Context, c *call) error
}

var operations = []operation{
	{"checkAccountActive", PortManagement, "http://www.xta.de/XTA/CheckAccountActive", xml.Name{}, (*Server).checkAccountActive},
	{"lookupService", PortManagement, "http://www.xta.de/XTA/IsServiceAvailable", xml.Name{Space: NSXTA, Local: "LookupServiceRequest"}, (*Server).lookupService},
	{"getTransportReport", PortManagement, "http://www.xta.de/XTA/GetTransportReport", xml.Name{Space: NSWSA, Local: "MessageID"}, (*Server).getTransportReport},
	{"cancelMessage", PortManagement, "http://www.xta.de/XTA/CancelMessage", xml.Name{Space: NSWSA, Local: "MessageID"}, (*Server).cancelMessage},
	{"createMessageId", PortManagement, "http://www.xta.de/XTA/CreateMessageID", xml.Name{}, (*Server).createMessageID},
	{"sendMessage", PortSend, "http://www.xta.de/XTA/SendMessage", xml.Name{Space: NSXTA, Local: "GenericContentContainer"}, (*Server).sendMessage},
	{"sendMessageSync", PortSend, "http://www.xta.de/XTA/SendMessageSync", xml.Name{Space: NSXTA, Local: "GenericContentContainer"}, (*Server).sendMessage},
	{"getMessage", PortMsgBox, osciMsgTypes + "MsgBoxFetchRequest", xml.Name{Space: NSOSCI, Local: "MsgBoxFetchRequest"}, (*Server).getMessage},
	{"getStatusList", PortMsgBox, osciMsgTypes + "MsgBoxStatusListRequest", xml.Name{Space: NSOSCI, Local: "MsgBoxStatusListRequest"}, (*Server).getStatusList},
	{"getNextMessage", PortMsgBox, osciMsgTypes + "MsgBoxGetNextMsgRequest", xml.Name{Space: NSOSCI, Local: "MsgBoxGetNextRequest"}, (*Server).getNextMessage},
	{"getNextStatusList", PortMsgBox, osciMsgTypes + "MsgBoxGetNextListRequest", xml.Name{Space: NSOSCI, Local: "MsgBoxGetNextRequest"}, (*Server).getNextStatusList},
	{"close", PortMsgBox, osciMsgTypes + "MsgBoxCloseRequest", xml.Name{Space: NSOSCI, Local: "MsgBoxCloseRequest"}, (*Server).close},
}

// findOperation returns the operation that matches, or nil.
func findOperation(match func(*operation) bool) *operation {
	for i := range operations {
		if match(&operations[i]) {
			return &operations[i]
		}
	}
	return nil
}

// Server is the XTA 2 Version 3 web service: the protocol over the message
// boxes (msgbox), which store what it accepts and hand out what it serves.
type Server struct {
	pool      *pgxpool.Pool
	box       *msgbox.Store
	tenants   func() *tenant.Set
	principal func(context.Context) *tenant.Principal
	schemas   *xmlschema.Registry
	directory Directory
	log       *slog.Logger
	now       func() time.Time
	metrics   *metrics

	// Identity is what transport reports name as XTAServerIdentity.
	Identity string
	// MaxContent is the container limit; MaxContent by default.
	MaxContent int64

	// SpoolDir holds the temporary files of large contents ("" = os.TempDir).
	SpoolDir string
}

// Config is what a Server needs.
type Config struct {
	Pool *pgxpool.Pool
	// Box stores the messages.
	Box       *msgbox.Store
	Tenants   func() *tenant.Set
	Principal func(context.Context) *tenant.Principal
	Schemas   *xmlschema.Registry
	Directory Directory
	Log       *slog.Logger
	Metrics   prometheus.Registerer
	Identity  string
}

// NewServer returns the XTA service. Mount its Handler for each port path.
func NewServer(c Config) *Server {
	s := &Server{
		pool: c.Pool, box: c.Box, tenants: c.Tenants, principal: c.Principal, schemas: c.Schemas,
		directory: c.Directory, log: c.Log, now: time.Now, Identity: c.Identity, MaxContent: MaxContent,
	}
	s.metrics = newMetrics(c.Metrics)
	return s
}

// call is one request being served.
type call struct {
	op        *operation
	req       *soapMessage
	w         http.ResponseWriter
	principal *tenant.Principal
	tenant    string // the tenant of the account acting
	account   string // the account acting, once account checked it
	bytesOut  int
	warnings  []string
	// validated are the content parts checked against an installed schema.
	validated map[int]bool
}

// Handler serves one port.
func (s *Server) Handler(port string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		start := s.now()
		c := &call{w: w, principal: s.principal(hr.Context())}
		name, outcome := "unknown", "ok"
		defer func() {
			s.metrics.observe(c.tenant, name, outcome, s.now().Sub(start), hr.ContentLength, c.bytesOut)
		}()
		f := s.serve(hr, port, c)
		if c.op != nil {
			name = c.op.name
		}
		if f != nil {
			outcome = f.Code.Number
			if outcome == "" {
				outcome = f.SOAPCode
			}
			action := ""
			relates := "http://www.w3.org/2005/08/addressing/unspecified"
			if c.req != nil {
				action, relates = c.req.Action, orDefault(c.req.MessageID, relates)
			}
			s.log.Info("xta fault", "port", port, "operation", name, "tenant", c.tenant, "code", outcome, "reason", f.Reason)
			c.bytesOut = writeEnvelope(w, http.StatusInternalServerError, envelope{action: faultAction(f, action), relatesTo: relates, body: f.body()})
		}
	})
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// serve runs the request and returns the fault to answer with, if any.
func (s *Server) serve(hr *http.Request, port string, c *call) *Fault {
	if hr.Method != http.MethodPost {
		return protocolFault("Sender", NSParzelle, "MethodNotAllowed", "XTA requests are HTTP POSTs, not %s", hr.Method)
	}
	if c.principal == nil {
		return xtaFault(CodeWrongCertificate, "no client certificate that a tenant of this node lists")
	}
	hr.Body = http.MaxBytesReader(c.w, hr.Body, s.MaxContent*4/3+8<<20)
	req, f := readRequest(hr, limits{contentBytes: s.MaxContent, spoolDir: s.SpoolDir})
	if f != nil {
		return f
	}
	defer req.Close()
	c.req = req
	c.op = findOperation(func(o *operation) bool { return o.action == req.Action })
	switch {
	case c.op == nil:
		f := protocolFault("Sender", NSWSA, "ActionNotSupported", "the Action %q is not an operation of XTA 2 Version 3", req.Action)
		f.ProblemAction = req.Action
		return f
	case c.op.port != port:
		f := protocolFault("Sender", NSWSA, "ActionNotSupported", "the Action %q belongs to the port %s, not %s", req.Action, c.op.port, port)
		f.ProblemAction = req.Action
		return f
	case c.op.input.Local == "" && req.Body != nil:
		return xtaFault(CodeBadParameters, "%s takes an empty SOAP Body, not {%s}%s", c.op.name, req.Body.Name.Space, req.Body.Name.Local)
	case c.op.input.Local != "" && req.Body == nil:
		return xtaFault(CodeNoParameter, "%s needs {%s}%s in the SOAP Body", c.op.name, c.op.input.Space, c.op.input.Local)
	case c.op.input.Local != "" && req.Body.Name != c.op.input:
		return xtaFault(CodeBadParameters, "the Action of %s does not match the body element {%s}%s", c.op.name, req.Body.Name.Space, req.Body.Name.Local)
	}
	if f := s.validate(c); f != nil {
		return f
	}
	if err := c.op.handle(s, hr.Context(), c); err != nil {
		var f *Fault
		if errors.As(err, &f) {
			return f
		}
		s.log.Error("xta operation failed", "operation", c.op.name, "tenant", c.tenant, "error", err)
		return xtaFault(CodeInternal, "the request could not be completed; the operator finds the cause in the node's log")
	}
	return nil
}

// validate checks the request envelope against the XTA schemas. Without
// installed schemas the request is served and the gap is logged (and, for
// a message, noted in its transport report).
func (s *Server) validate(c *call) *Fault {
	if s.schemas == nil || !s.schemas.Has(xmlschema.XTA2V3.Name) {
		c.warnings = append(c.warnings, "the XTA 2 V3 schemas are not installed on this node; the request was not schema-validated")
		return nil
	}
	err := s.schemas.Validate(xmlschema.XTA2V3.Name, c.req.skeleton())
	var ve *xmlschema.ValidationError
	if errors.As(err, &ve) {
		f := xtaFault(CodeBadParameters, "the request does not conform to the XTA 2 V3 schema: %s", ve.Summary(5))
		f.Subcode.Space, f.Subcode.Local = NSParzelle, "SchemaViolation"
		return f
	}
	if err != nil {
		s.log.Error("xta schema validation failed", "error", err)
		return xtaFault(CodeInternal, "schema validation failed")
	}
	return nil
}

// account checks that the client certificate may act for the account
// and returns the tenant that hosts it.
func (s *Server) account(c *call, p *Party) (*tenant.Config, *Fault) {
	if p == nil || p.ID == "" {
		// Without an Author header the certificate's only account is meant.
		var ids []string
		for _, g := range c.principal.Grants {
			for _, id := range g.Identities {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
		if len(ids) != 1 {
			return nil, xtaFault(CodeNoParameter, "the oscimeta:Author header is missing and the client certificate may act for %d accounts", len(ids))
		}
		p = &Party{ID: ids[0]}
	}
	c.account = p.ID
	owner := s.tenants().Owner(p.ID)
	if owner == nil {
		return nil, xtaFault(CodeNoAccount, "no account %q on this node", p.ID)
	}
	c.tenant = owner.ID
	if !c.principal.MayActFor(p.ID) {
		return nil, xtaFault(CodeWrongCertificate, "the client certificate %q may not act for the account %q", c.principal.Subject, p.ID)
	}
	for _, id := range owner.Identities {
		if id.ID == p.ID && !slices.Contains(id.Transports, "xta") {
			return nil, xtaFault(CodeServiceNotBooked, "the account %q does not use XTA", p.ID)
		}
	}
	return owner, nil
}

// reply writes a successful response.
func (c *call) reply(headers, body string) {
	c.bytesOut = writeEnvelope(c.w, http.StatusOK, envelope{action: c.op.action, relatesTo: c.req.MessageID, headers: headers, body: body})
}

func (s *Server) checkAccountActive(ctx context.Context, c *call) error {
	if _, f := s.account(c, c.req.Author); f != nil {
		return f
	}
	c.reply("", "")
	return nil
}

func (s *Server) createMessageID(ctx context.Context, c *call) error {
	if _, f := s.account(c, c.req.Author); f != nil {
		return f
	}
	host := s.Identity
	if u, err := url.Parse(s.Identity); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	c.reply("", `<wsa:MessageID>urn:de:xta:messageid:`+esc(host)+`:`+uuid()+`</wsa:MessageID>`)
	return nil
}

// metrics are the XTA service's collectors.
type metrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_xta_operations_total", Help: "XTA operations by tenant of the acting account, operation and outcome (ok, or the XTA error code / SOAP fault code).",
		}, []string{"tenant", "operation", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parzelle_xta_operation_duration_seconds", Help: "XTA operation duration by tenant and operation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"tenant", "operation"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parzelle_xta_bytes_total", Help: "Bytes of XTA requests (in) and responses (out) by tenant and operation.",
		}, []string{"tenant", "operation", "direction"}),
	}
	if reg != nil {
		reg.MustRegister(m.ops, m.duration, m.bytes)
	}
	return m
}

func (m *metrics) observe(tenantID, op, outcome string, d time.Duration, in int64, out int) {
	m.ops.WithLabelValues(tenantID, op, outcome).Inc()
	m.duration.WithLabelValues(tenantID, op).Observe(d.Seconds())
	if in > 0 {
		m.bytes.WithLabelValues(tenantID, op, "in").Add(float64(in))
	}
	m.bytes.WithLabelValues(tenantID, op, "out").Add(float64(out))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Mount serves the three ports through handle (node.HandleTransport).
func (s *Server) Mount(handle func(pattern string, h http.Handler)) {
	for _, p := range []string{PortManagement, PortSend, PortMsgBox} {
		handle(p, s.Handler(p))
	}
}

// AnswerID is the MessageID of the node's answer to the message with id
// (a name-based UUID in this server's namespace): the same for every
// attempt to answer it, so that an answer is stored once.
func (s *Server) AnswerID(id string) string {
	host := s.Identity
	if u, err := url.Parse(s.Identity); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	h := sha256.Sum256([]byte("parzelle/xta/answer/v1\x00" + id))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return "urn:de:xta:messageid:" + host + ":" + x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
