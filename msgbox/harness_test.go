package msgbox

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
)

// testTenants are München (author) and Köln (reader).
var testTenants = map[string]string{
	"muenchen": "id: muenchen\nname: München\nidentities:\n  - {id: \"dvdv:09162000-0001\", type: xoev, category: Meldebehörde, transports: [xta]}\n",
	"koeln":    "id: koeln\nname: Köln\nidentities:\n  - {id: \"dvdv:05315000-0001\", type: xoev, category: Meldebehörde, transports: [xta]}\n",
}

// testStore returns message boxes of the test tenants on the pool, their
// tenant rows inserted, sealing with keys in a temporary directory.
func testStore(t testing.TB, pool *pgxpool.Pool) *Store {
	t.Helper()
	dir := t.TempDir()
	var configs []*tenant.Config
	for id, body := range testTenants {
		path := filepath.Join(dir, id+".yaml")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := tenant.ParseFile(path)
		if err != nil {
			t.Fatal(err)
		}
		configs = append(configs, c)
		if _, err := pool.Exec(t.Context(), `INSERT INTO tenant (tenant_id, name, config_version) VALUES ($1, $2, 1)`, c.ID, c.Name); err != nil {
			t.Fatal(err)
		}
	}
	set := tenant.NewSet(configs...)
	kp := keys.NewFileProvider(filepath.Join(dir, "keys"), func() keys.Tenants { return set })
	return New(Config{Pool: pool, Tenants: func() *tenant.Set { return set }, Keyring: sealing.NewKeyring(kp)})
}
