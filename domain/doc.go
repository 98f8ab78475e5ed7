// Package domain holds the run aggregate of runledger: the commands a run
// accepts, the events it records, and the pure rules that turn one into the
// other. It performs no I/O and never reads the clock: every decision takes
// the server's time as an argument, so the rules can be tested with any
// instant and replayed to any instant.
package domain
