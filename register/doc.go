// Package register is the tenant-scoped register store: subject records
// (persons, businesses) with bitemporal history, encrypted under the
// tenant's keys, found through blind indexes, every access authorized by
// the tenant's policy and appended to its hash-chained audit log, and the
// CRUD API Fachverfahren reach it by.
package register
