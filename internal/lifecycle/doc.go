// Package lifecycle owns the one lifecycle every background part of
// `runledger serve` shares: a Service is Run(ctx) error, working until ctx
// ends and then returning nil (or ctx's error); a Group starts named
// services side by side, reports one that returns (or panics) while ctx is
// live by its name, so that serve stops non-zero naming it, and stops them
// all within a deadline, naming those that did not stop. HTTPServer gives an
// http.Server that shape.
//
// It knows nothing of what it runs: it imports the standard library only,
// and must never import a runledger package (the services import nothing of
// it either: the shape is structural, so any Run(ctx) error is one).
package lifecycle
