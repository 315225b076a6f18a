// Package jobs will hold the River workers of the pipeline between transport
// and register: validation, mapping, retries and dead letters. River's
// schema is already applied by package db.
//
// Nothing is built here yet.
package jobs
