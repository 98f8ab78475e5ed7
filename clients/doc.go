// Package clients runs the tests of runledger's clients in other languages
// against a real `runledger serve` on a real PostgreSQL: the Python package
// in clients/python (python3 -m unittest) and the JavaScript package in
// clients/js. It holds no code of its own; the clients are not Go.
package clients
