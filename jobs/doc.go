// Package jobs runs the node's River client: the background work between
// transport and register (delivery now; validation, mapping, retries and
// dead letters as they are built). River's schema is applied by package db.
package jobs
