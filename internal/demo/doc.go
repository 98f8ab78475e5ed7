// Package demo is `runledger demo`: a fleet of simulated dialers built on
// the worker SDK (api/client), playing against a running server what the
// incident was about. It opens with a scripted act that shows every ending
// of a run on its own business (a completion, a carrier failure, a crashed
// worker reaped as stale, a user's graceful cancel, a forced cancel of a dead
// worker, a pause and resume, a stall), then dials at random.
//
// It is a client of the service like any worker: it imports api/client and
// nothing of the server, and must never import a server package (api,
// eventstore, projections, audit, …). Tokens and the audit's short run ids
// come from the command that wires it (cmd/runledger), which owns the
// secret.
//
// Why it ships in the production binary: the contract (DESIGN.md) names
// `runledger demo`, and `make demo` runs it beside `make run`, so the
// command stays; what it costs is measured small. Built with and without
// it (go1.26, linux/amd64), the binary is 24,201,102 against 23,916,187
// bytes (285 KB, 1.2%; 209 KB stripped), it adds no module to
// `go version -m` (api/client's dependencies are the server's too), and
// it does nothing unless `runledger demo` is run: no init, no goroutine, no
// flag of serve. A binary of its own would break the contract's command;
// a build tag would make the command depend on how the binary was built.
package demo
