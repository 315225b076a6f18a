package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/mapping"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (c *Console) tenantList(w http.ResponseWriter, r *http.Request, s *session) {
	set := c.Tenants.Current()
	type row struct {
		ID, Name, File string
		Version        int
		Identities     int
		Inboxes        int
	}
	var rows []row
	for _, t := range c.visibleTenants(s) {
		rows = append(rows, row{ID: t.ID, Name: t.Name, File: t.File, Version: set.Version(t.ID), Identities: len(t.Identities), Inboxes: len(t.Inboxes)})
	}
	c.render(w, r, s, http.StatusOK, "tenants", "Mandanten", map[string]any{"Tenants": rows, "Problems": c.problems(s)})
}

// configVersion is one applied version of a tenant file.
type configVersion struct {
	Version   int
	SHA256    string
	File      string
	AppliedAt time.Time
	Document  string
}

func (c *Console) versions(ctx context.Context, tenantID string) ([]configVersion, error) {
	var out []configVersion
	err := db.InTenant(ctx, c.Pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT version, sha256, source_file, applied_at, document FROM tenant_config_version WHERE tenant_id = $1 ORDER BY version DESC`, tenantID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[configVersion])
		return err
	})
	return out, err
}

func (c *Console) tenantPage(w http.ResponseWriter, r *http.Request, s *session) {
	tenantID := r.PathValue("tenant")
	if !c.allow(w, r, s, tenantID) {
		return
	}
	t := c.Tenants.Current().Tenant(tenantID)
	versions, err := c.versions(r.Context(), tenantID)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	certs, err := c.Keys.Certificates(r.Context())
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	var own []keys.Certificate
	for _, cert := range certs {
		if cert.Tenant == tenantID {
			own = append(own, cert)
		}
	}
	type inboxSpecs struct {
		Identity, Register string
		Specs              []string
		Error              string
	}
	var inboxes []inboxSpecs
	for _, in := range t.Inboxes {
		is := inboxSpecs{Identity: in.Identity, Register: in.Register}
		set, err := mapping.ForInbox(t, in)
		if err != nil {
			is.Error = err.Error()
		} else {
			for _, sp := range set.Specs() {
				is.Specs = append(is.Specs, sp.Source())
			}
		}
		inboxes = append(inboxes, is)
	}
	data := map[string]any{"Inboxes": inboxes, "T": t, "Version": c.Tenants.Current().Version(tenantID), "Versions": versions, "Certs": own, "Now": c.Now()}
	// A diff between two versions: ?from=1&to=2 (default: the last two).
	from, to := versionParam(r, "from"), versionParam(r, "to")
	if len(versions) >= 2 && from == 0 && to == 0 {
		from, to = versions[1].Version, versions[0].Version
	}
	var a, b *configVersion
	for i := range versions {
		switch versions[i].Version {
		case from:
			a = &versions[i]
		case to:
			b = &versions[i]
		}
	}
	if a != nil && b != nil {
		data["Diff"], data["From"], data["To"] = lineDiff(a.Document, b.Document), from, to
	}
	c.render(w, r, s, http.StatusOK, "tenant", "Mandant "+tenantID, data)
}

func versionParam(r *http.Request, name string) int {
	n, _ := strconv.Atoi(r.URL.Query().Get(name))
	return n
}

// diffLine is a line of a diff: " " kept, "-" removed, "+" added.
type diffLine struct {
	Op, Text string
}

// lineDiff is the shortest line diff from a to b (longest common
// subsequence; tenant files are short).
func lineDiff(a, b string) []diffLine {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(x)*len(y) > 4_000_000 {
		return []diffLine{{"!", fmt.Sprintf("the files have %d and %d lines, too many to compare here", len(x), len(y))}}
	}
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out = append(out, diffLine{" ", x[i]})
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, diffLine{"+", y[j]})
			j++
		default:
			out = append(out, diffLine{"-", x[i]})
			i++
		}
	}
	return out
}
