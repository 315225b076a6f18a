package register_test

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/parzelle/parzelle/register"
)

// openAPIDoc is the part of the OpenAPI document the tests check.
type openAPIDoc struct {
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Required   []string             `yaml:"required"`
			Properties map[string]yaml.Node `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

type openAPIOperation struct {
	OperationID string               `yaml:"operationId"`
	Responses   map[string]yaml.Node `yaml:"responses"`
	Parameters  []struct {
		Ref  string `yaml:"$ref"`
		Name string `yaml:"name"`
		In   string `yaml:"in"`
	} `yaml:"parameters"`
}

func loadOpenAPI(t *testing.T) (openAPIDoc, yaml.Node) {
	t.Helper()
	var doc openAPIDoc
	if err := yaml.Unmarshal(register.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(register.OpenAPI, &root); err != nil {
		t.Fatal(err)
	}
	return doc, root
}

// operation returns the documented operation of a mounted route pattern
// ("GET /api/v1/..."), or false.
func (d openAPIDoc) operation(t *testing.T, pattern string) (openAPIOperation, bool) {
	t.Helper()
	method, path, _ := strings.Cut(pattern, " ")
	item, ok := d.Paths[path]
	if !ok {
		return openAPIOperation{}, false
	}
	node, ok := item[strings.ToLower(method)]
	if !ok {
		return openAPIOperation{}, false
	}
	var op openAPIOperation
	if err := node.Decode(&op); err != nil {
		t.Fatalf("%s: %v", pattern, err)
	}
	return op, true
}

// mountedRoutes are the route patterns the API mounts.
func mountedRoutes() []string {
	var routes []string
	register.NewAPI(nil, nil).Mount(func(pattern string, _ http.Handler) { routes = append(routes, pattern) })
	return routes
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIMatchesRoutes: every route the API mounts is documented, with
// its path parameters, and the document describes no route that is not
// mounted.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	routes := mountedRoutes()
	if len(routes) < 7 {
		t.Fatalf("the API mounts only %v", routes)
	}
	ids := map[string]string{}
	for _, r := range routes {
		op, ok := doc.operation(t, r)
		if !ok {
			t.Errorf("route %q is not in openapi.yaml", r)
			continue
		}
		if op.OperationID == "" || ids[op.OperationID] != "" {
			t.Errorf("%s: operationId %q missing or used by %s too", r, op.OperationID, ids[op.OperationID])
		}
		ids[op.OperationID] = r
		// Path parameters: each {name} of the pattern is declared on the
		// path item or the operation.
		_, path, _ := strings.Cut(r, " ")
		var declared []string
		var item struct {
			Parameters []struct {
				Ref  string `yaml:"$ref"`
				Name string `yaml:"name"`
			} `yaml:"parameters"`
		}
		if node, ok := doc.Paths[path]["parameters"]; ok {
			if err := node.Decode(&item.Parameters); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range item.Parameters {
			declared = append(declared, p.Name, strings.TrimPrefix(p.Ref, "#/components/parameters/"))
		}
		for _, p := range op.Parameters {
			declared = append(declared, p.Name, strings.TrimPrefix(p.Ref, "#/components/parameters/"))
		}
		for _, m := range regexp.MustCompile(`\{([a-z]+)\}`).FindAllStringSubmatch(path, -1) {
			if !slices.Contains(declared, m[1]) {
				t.Errorf("%s: path parameter %s is not declared", r, m[1])
			}
		}
	}
	for path, item := range doc.Paths {
		for method := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			if pattern := strings.ToUpper(method) + " " + path; !slices.Contains(routes, pattern) {
				t.Errorf("openapi.yaml documents %s, which the API does not mount", pattern)
			}
		}
	}
}

// TestOpenAPIExamples: every IDNr the document shows (examples, defaults)
// is a valid one, and fits the pattern the document gives for IDNrs.
func TestOpenAPIExamples(t *testing.T) {
	_, root := loadOpenAPI(t)
	var found []string
	var patterns []*regexp.Regexp
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, key)
			}
		case yaml.MappingNode:
			isIDNr := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "name" && n.Content[i+1].Value == "idnr" {
					isIDNr = true
				}
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				switch {
				case k == "idnr" && v.Kind == yaml.ScalarNode:
					found = append(found, v.Value)
				case isIDNr && k == "schema":
					var s struct {
						Pattern string `yaml:"pattern"`
						Example string `yaml:"example"`
					}
					if err := v.Decode(&s); err == nil && s.Pattern != "" {
						patterns = append(patterns, regexp.MustCompile(s.Pattern))
					}
					if s.Example != "" {
						found = append(found, s.Example)
					}
				case isIDNr && k == "example":
					found = append(found, v.Value)
				}
				walk(v, k)
			}
		}
	}
	walk(&root, "")
	if len(found) == 0 {
		t.Fatal("the document shows no IDNr; the test found nothing to check")
	}
	for _, id := range found {
		if !register.ValidIDNr(id) {
			t.Errorf("example IDNr %q is not valid (check digit %c)", id, register.IDNrCheckDigit(id[:min(10, len(id))]+strings.Repeat("0", max(0, 10-len(id)))))
		}
		for _, p := range patterns {
			if !p.MatchString(id) {
				t.Errorf("example IDNr %q does not match the documented pattern %s", id, p)
			}
		}
	}
}

// TestOpenAPISchemasMatchTypes: the documented schemas of what the API
// returns have exactly the JSON fields of the Go types it encodes, and
// require only fields that are always present.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	for name, v := range map[string]any{"Record": register.Record{}, "Version": register.Version{}, "Disclosure": register.Disclosure{}, "Merge": register.Merge{}} {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("no schema %s", name)
			continue
		}
		var fields, always []string
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			tag := typ.Field(i).Tag.Get("json")
			n, opts, _ := strings.Cut(tag, ",")
			if n == "-" || n == "" {
				continue
			}
			fields = append(fields, n)
			if !strings.Contains(opts, "omitempty") {
				always = append(always, n)
			}
		}
		var documented []string
		for p := range s.Properties {
			documented = append(documented, p)
		}
		sort.Strings(fields)
		sort.Strings(documented)
		if !slices.Equal(fields, documented) {
			t.Errorf("schema %s has properties %v, the API sends %v", name, documented, fields)
		}
		for _, r := range s.Required {
			if !slices.Contains(always, r) {
				t.Errorf("schema %s requires %s, which the API omits when empty", name, r)
			}
		}
	}
}

// TestOpenAPIStatusCodes sends requests that make each operation answer
// with each status its handler can produce and checks that the document
// lists that status for the operation.
func TestOpenAPIStatusCodes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	h := startHarness(t)
	path := records("duesseldorf", "melderegister")
	unknownRegister := records("duesseldorf", "steuerregister")
	rec := h.mustCreate(t, "duesseldorf", isolationPerson("oa-1", idnr("3141592653"), "Spezifikation"))
	gone := h.mustCreate(t, "duesseldorf", isolationPerson("oa-2", idnr("2718281828"), "Entfernt"))
	if res := h.call(t, "duesseldorf", "meldewesen", "DELETE", path+"/"+gone.ID, nil, "Idempotency-Key", "oa-delete"); res.status != 204 {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	broken := h.mustCreate(t, "duesseldorf", isolationPerson("oa-3", idnr("1618033988"), "Kaputt"))
	if _, err := h.pool.Exec(t.Context(), `UPDATE register_version SET payload = '\x00112233445566778899aabbccddeeff00112233445566778899' WHERE record_id = $1`, broken.ID); err != nil {
		t.Fatal(err)
	}
	missing := "0b7e2d4c-9a51-4f3e-8c6d-2a1b3c4d5e6f"
	// Records derived from facts, which can be merged.
	var derived []string
	for _, name := range []string{"Abgeleitet", "Dublette", "Zweite"} {
		f := register.Fact{SubjectKey: "oa/" + name, EventID: "oa-event/" + name, MessageID: "oa-msg-" + name, Date: "2024-01-01", Source: "openapi-test@1",
			Set: []register.Assignment{{Attribute: "familienname", Value: name}}}
		res, err := h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{f})
		if err != nil {
			t.Fatal(err)
		}
		derived = append(derived, res[0].RecordID)
	}
	if _, err := h.pool.Exec(t.Context(), `UPDATE register_version SET payload = '\x00112233445566778899aabbccddeeff00112233445566778899' WHERE record_id = $1`, derived[2]); err != nil {
		t.Fatal(err)
	}
	var mergeID float64
	merged := func(res response) {
		var m map[string]any
		res.json(t, &m)
		mergeID, _ = m["id"].(float64)
	}
	change := map[string]any{"attributes": map[string]any{"vornamen": "Neu"}}
	huge := map[string]any{"subjectKey": "x", "attributes": map[string]any{"familienname": strings.Repeat("x", 1<<20)}}
	bearer := []string{"Authorization", "Bearer not.a.token"}
	log := "/api/v1/tenants/duesseldorf/registers/melderegister/access-log"
	const (
		create  = "POST " + "/api/v1/tenants/{tenant}/registers/{register}/records"
		search  = "GET " + "/api/v1/tenants/{tenant}/registers/{register}/records"
		get     = "GET " + "/api/v1/tenants/{tenant}/registers/{register}/records/{id}"
		update  = "PATCH " + "/api/v1/tenants/{tenant}/registers/{register}/records/{id}"
		del     = "DELETE " + "/api/v1/tenants/{tenant}/registers/{register}/records/{id}"
		history = "GET " + "/api/v1/tenants/{tenant}/registers/{register}/records/{id}/history"
		export  = "GET " + "/api/v1/tenants/{tenant}/registers/{register}/access-log"
		merge   = "POST " + "/api/v1/tenants/{tenant}/registers/{register}/records/{id}/merge"
		merges  = "GET " + "/api/v1/tenants/{tenant}/registers/{register}/records/{id}/merges"
		undo    = "POST " + "/api/v1/tenants/{tenant}/registers/{register}/merges/{merge}/undo"
		erase   = "POST " + "/api/v1/tenants/{tenant}/registers/{register}/records/{id}/erasure"
		spec    = "GET /api/v1/openapi.yaml"
	)
	type req struct {
		route, cn, purpose, path string
		body                     any
		headers                  []string
		status                   int
		// then, if set, sees the response (and may set what later
		// requests use).
		then func(response)
	}
	fv := func(route, p string, body any, status int, headers ...string) req {
		return req{route, "duesseldorf", "meldewesen", p, body, headers, status, nil}
	}
	undoPath := func() string {
		return fmt.Sprintf("/api/v1/tenants/duesseldorf/registers/melderegister/merges/%d/undo", int64(mergeID))
	}
	reason := map[string]any{"reason": "Testfall"}
	order := map[string]any{"order": "Az. 17/2026"}
	eraser := func(p string, body any, status int, headers ...string) req {
		return req{erase, "duesseldorf-dsb", "loeschung", p, body, headers, status, nil}
	}
	dsb := func(p string, status int, headers ...string) req {
		return req{export, "duesseldorf-dsb", "datenschutzauskunft", p, nil, headers, status, nil}
	}
	requests := []req{
		fv(spec, "/api/v1/openapi.yaml", nil, 200),

		fv(create, path, isolationPerson("oa-4", idnr("5772156649"), "Neu"), 201),
		fv(create, path, map[string]any{"subjectKey": "x", "unknown": 1}, 400),
		fv(create, path, isolationPerson("oa-5", idnr("5772156649"), "Neu"), 401, bearer...),
		{create, "koeln", "meldewesen", path, isolationPerson("oa-5", idnr("5772156649"), "Neu"), nil, 403, nil},
		{create, "stranger", "meldewesen", path, isolationPerson("oa-5", idnr("5772156649"), "Neu"), nil, 403, nil},
		fv(create, unknownRegister, isolationPerson("oa-5", idnr("5772156649"), "Neu"), 404),
		fv(create, path, isolationPerson("oa-1", idnr("5772156649"), "Neu"), 409),
		fv(create, path, huge, 413),
		fv(create, path, isolationPerson("oa-5", idnr("5772156649"), "Neu"), 415, "Content-Type", "text/plain"),
		fv(create, path, isolationPerson("oa-5", "12345678901", "Neu"), 422),

		fv(search, path+"?idnr="+idnr("3141592653"), nil, 200),
		fv(search, path+"?nachname=x", nil, 400),
		fv(search, path+"?idnr="+idnr("3141592653"), nil, 401, bearer...),
		{search, "koeln", "meldewesen", path + "?idnr=" + idnr("3141592653"), nil, nil, 403, nil},
		fv(search, unknownRegister+"?subjectKey=x", nil, 404),
		fv(search, path+"?familienname=x", nil, 422),

		fv(get, path+"/"+rec.ID, nil, 200),
		fv(get, path+"/"+rec.ID+"?knownAt=gestern", nil, 400),
		fv(get, path+"/"+rec.ID, nil, 401, bearer...),
		{get, "duesseldorf-sb", "meldewesen", path + "/" + rec.ID, nil, nil, 403, nil},
		fv(get, path+"/"+missing, nil, 404),
		fv(get, path+"/"+gone.ID, nil, 410),
		fv(get, path+"/"+rec.ID+"?validAt=2024-13-01", nil, 422),
		fv(get, path+"/"+broken.ID, nil, 503),

		fv(update, path+"/"+rec.ID, change, 200),
		fv(update, path+"/"+rec.ID, change, 400, "If-Match", "W/abc"),
		fv(update, path+"/"+rec.ID, change, 401, bearer...),
		{update, "duesseldorf-sb", "auskunft", path + "/" + rec.ID, change, nil, 403, nil},
		fv(update, path+"/"+missing, change, 404),
		fv(update, path+"/"+rec.ID, change, 409, "Idempotency-Key", "oa-delete"),
		fv(update, path+"/"+gone.ID, change, 410),
		fv(update, path+"/"+rec.ID, change, 412, "If-Match", `"1"`),
		fv(update, path+"/"+rec.ID, huge, 413),
		fv(update, path+"/"+rec.ID, change, 415, "Content-Type", "application/xml"),
		fv(update, path+"/"+rec.ID, map[string]any{"attributes": map[string]any{"geburtsdatum": "gestern"}}, 422),
		fv(update, path+"/"+broken.ID, change, 503),

		fv(del, path+"/"+rec.ID, nil, 400, "If-Match", "eins"),
		fv(del, path+"/"+rec.ID, nil, 401, bearer...),
		{del, "duesseldorf-sb", "auskunft", path + "/" + rec.ID, nil, nil, 403, nil},
		fv(del, path+"/"+missing, nil, 404),
		fv(del, path+"/"+rec.ID, nil, 409, "Idempotency-Key", "oa-delete"),
		fv(del, path+"/"+gone.ID, nil, 410),
		fv(del, path+"/"+rec.ID, nil, 412, "If-Match", `"1"`),

		fv(history, path+"/"+rec.ID+"/history", nil, 200),
		fv(history, path+"/"+rec.ID+"/history?knownAt=gestern", nil, 400),
		fv(history, path+"/"+rec.ID+"/history", nil, 401, bearer...),
		{history, "koeln", "meldewesen", path + "/" + rec.ID + "/history", nil, nil, 403, nil},
		fv(history, path+"/"+missing+"/history", nil, 404),
		fv(history, path+"/"+rec.ID+"/history?validAt=morgen", nil, 422),
		fv(history, path+"/"+broken.ID+"/history", nil, 503),

		dsb(log, 200),
		dsb(log+"?from=gestern", 400),
		dsb(log, 401, bearer...),
		{export, "duesseldorf", "meldewesen", log, nil, nil, 403, nil},
		dsb("/api/v1/tenants/duesseldorf/registers/steuerregister/access-log", 404),
		dsb(log+"?idnr=12345", 422),

		fv(merge, path+"/"+derived[0]+"/merge", map[string]any{"duplicate": derived[1], "grund": "x"}, 400),
		fv(merge, path+"/"+derived[0]+"/merge", map[string]any{"duplicate": derived[1], "reason": "x"}, 401, bearer...),
		{merge, "duesseldorf-sb", "auskunft", path + "/" + derived[0] + "/merge", map[string]any{"duplicate": derived[1], "reason": "x"}, nil, 403, nil},
		fv(merge, path+"/"+missing+"/merge", map[string]any{"duplicate": derived[1], "reason": "x"}, 404),
		fv(merge, path+"/"+gone.ID+"/merge", map[string]any{"duplicate": derived[1], "reason": "x"}, 410),
		fv(merge, path+"/"+derived[0]+"/merge", map[string]any{"duplicate": derived[1], "reason": "x"}, 415, "Content-Type", "text/plain"),
		fv(merge, path+"/"+derived[0]+"/merge", map[string]any{"duplicate": rec.ID, "reason": "x"}, 422),
		fv(merge, path+"/"+derived[2]+"/merge", map[string]any{"duplicate": derived[1], "reason": "x"}, 503),
		{merge, "duesseldorf", "meldewesen", path + "/" + derived[0] + "/merge", map[string]any{"duplicate": derived[1], "reason": "Dublette"}, nil, 200, merged},

		fv(merges, path+"/"+derived[0]+"/merges", nil, 200),
		fv(merges, path+"/"+derived[0]+"/merges", nil, 401, bearer...),
		{merges, "koeln", "meldewesen", path + "/" + derived[0] + "/merges", nil, nil, 403, nil},
		fv(merges, path+"/"+missing+"/merges", nil, 404),
	}
	requests = append(requests,
		req{undo, "duesseldorf", "meldewesen", "", map[string]any{"grund": "x"}, nil, 400, nil},
		req{undo, "duesseldorf", "meldewesen", "", reason, bearer, 401, nil},
		req{undo, "duesseldorf-sb", "auskunft", "", reason, nil, 403, nil},
		fv(undo, "/api/v1/tenants/duesseldorf/registers/melderegister/merges/999999/undo", reason, 404),
		req{undo, "duesseldorf", "meldewesen", "", reason, []string{"Content-Type", "text/plain"}, 415, nil},
		req{undo, "duesseldorf", "meldewesen", "", map[string]any{"reason": ""}, nil, 422, nil},
		req{undo, "duesseldorf", "meldewesen", "", reason, nil, 200, nil},
		req{undo, "duesseldorf", "meldewesen", "", reason, nil, 409, nil},
		eraser(path+"/"+gone.ID+"/erasure", map[string]any{"befehl": "x"}, 400),
		eraser(path+"/"+gone.ID+"/erasure", order, 401, bearer...),
		fv(erase, path+"/"+gone.ID+"/erasure", order, 403),
		eraser(path+"/"+missing+"/erasure", order, 404),
		eraser(path+"/"+gone.ID+"/erasure", order, 415, "Content-Type", "text/plain"),
		eraser(path+"/"+gone.ID+"/erasure", map[string]any{"order": "\n"}, 422),
		eraser(path+"/"+gone.ID+"/erasure", order, 200),
		fv(del, path+"/"+rec.ID, nil, 204),
	)
	undocumented := map[string][]int{}
	for _, r := range requests {
		method, _, _ := strings.Cut(r.route, " ")
		if r.route == undo && r.path == "" {
			r.path = undoPath()
		}
		res := h.call(t, r.cn, r.purpose, method, r.path, r.body, r.headers...)
		if res.status != r.status {
			t.Errorf("%s %s: %d, want %d: %.300s", method, r.path, res.status, r.status, res.body)
			continue
		}
		if r.then != nil {
			r.then(res)
		}
		if r.status >= 400 {
			if p := res.problem(t); p["status"] != float64(r.status) {
				t.Errorf("%s %s: problem status %v", method, r.path, p["status"])
			}
		}
		op, ok := doc.operation(t, r.route)
		if !ok {
			t.Errorf("%s is not documented", r.route)
			continue
		}
		if !documents(op, r.status) && !slices.Contains(undocumented[op.OperationID], r.status) {
			undocumented[op.OperationID] = append(undocumented[op.OperationID], r.status)
		}
	}
	for id, codes := range undocumented {
		t.Errorf("operation %s answers %v, which openapi.yaml does not list", id, codes)
	}
	// Every mounted route was exercised.
	for _, route := range mountedRoutes() {
		if !slices.ContainsFunc(requests, func(r req) bool { return r.route == route }) {
			t.Errorf("route %s is not exercised", route)
		}
	}
}

// documents reports whether the operation lists the status, itself or by
// its range (4XX).
func documents(op openAPIOperation, status int) bool {
	_, exact := op.Responses[strconv.Itoa(status)]
	_, ranged := op.Responses[fmt.Sprintf("%dXX", status/100)]
	return exact || ranged
}
