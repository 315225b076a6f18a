// Package faults holds the fault suite (faults_test.go): a real node started
// as a subprocess on its own PostgreSQL cluster, under bounded XTA load into
// a register inbox, through kill -9, PostgreSQL restarts and outages, a
// spool that cannot be written and a second node on the same database;
// after each it counts accepted, applied, lost, applied twice and stuck
// messages and the time to recover. `make faults` runs the full form,
// `make test` a short one.
package faults
