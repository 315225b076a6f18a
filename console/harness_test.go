package console_test

import (
	"testing"
	"time"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/console"
	"github.com/parzelle/parzelle/node/nodetest"
)

const xmeldNS = nodetest.XMeldNS

// personalData are the fixtures' personal data that no page may show
// without a tenant administrator asking for it.
var personalData = []string{"Ćosić", "Mirela", "Lindemannstraße", "Venloer", "Willi-Becker"}

var (
	ags         = nodetest.AGS
	tenantWith  = nodetest.MelderegisterTenant
	loadSchemas = nodetest.Schemas
	message     = nodetest.XMeld
)

// passwords of the test's console users.
var passwords = map[string]string{"betrieb": "betrieb-test-passwort", "duesseldorf-admin": "duesseldorf-test-passwort", "koeln-admin": "koeln-test-passwort"}

// consoleUsers are a platform operator and one administrator per tenant.
func consoleUsers(t testing.TB) []config.ConsoleUser {
	var users []config.ConsoleUser
	for _, u := range []config.ConsoleUser{{Name: "betrieb", Role: config.RoleOperator}, {Name: "duesseldorf-admin", Role: config.RoleTenantAdmin, Tenant: "duesseldorf"},
		{Name: "koeln-admin", Role: config.RoleTenantAdmin, Tenant: "koeln"}} {
		h, err := console.HashPassword(passwords[u.Name])
		if err != nil {
			t.Fatal(err)
		}
		u.PasswordHash = h
		users = append(users, u)
	}
	return users
}

// startNode starts a node with Düsseldorf and Köln mapping Zuzug only, and
// the console users.
func startNode(t testing.TB, c config.Console) *nodetest.Node {
	c.Users = consoleUsers(t)
	return nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug"), "koeln": tenantWith(t, "koeln", "zuzug")},
		Clients: []string{"duesseldorf", "koeln"}, Schemas: loadSchemas(t), Console: c})
}

// send sends fixture messages from the tenant's Fachverfahren to its
// register inbox and waits until their reports settle.
func send(t testing.TB, n *nodetest.Node, tenantID string, prefixes ...string) []string {
	t.Helper()
	author := "ags:" + ags[tenantID]
	c := n.XTAClient(tenantID, author)
	var ids []string
	for _, p := range prefixes {
		typ, doc := message(t, p)
		id, err := n.Send(t.Context(), c, author, "register:"+ags[tenantID], typ, xmeldNS, doc)
		if err != nil {
			t.Fatalf("send %s: %v", p, err)
		}
		ids = append(ids, id)
	}
	n.Settle(t, 2*time.Minute, ids...)
	return ids
}
