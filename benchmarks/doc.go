// Package benchmarks holds mailfunnel's end-to-end benchmarks: the
// in-process ingest benchmark (server and load generator in one process,
// over loopback) and, in sub-packages, the load generator (loadgen) and its
// command, the bare Fiber baseline (ceiling, cmd/ceiling) and the runner of
// make bench-ingest (cmd/benchingest), which compares the built mailfunnel
// with the ceiling and a Benthos peer (benthos/, a module of its own so that
// mailfunnel's module does not depend on Benthos). Results and the commands
// that produced them are in RESULTS.md.
package benchmarks
