// Package register will be the tenant-scoped register store: records with
// bitemporal history, envelope encryption under the tenant's key, blind
// indexes, the audit chain, the access log and the CRUD API.
//
// Nothing is built here yet; see the register issue.
package register
