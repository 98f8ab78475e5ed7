// Package arch holds no code: its test enforces the arrows between
// runledger's packages that docs/ARCHITECTURE.md draws (which package may
// import which, and which must never), from what `go list` reports, so a
// change that points a layer upward fails a test instead of a review.
package arch
