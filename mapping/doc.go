// Package mapping will be the declarative mapping engine that turns XÖV
// process messages into register operations.
//
// Nothing is built here yet; see the mapping issue.
package mapping
