// Package benchmarks holds mailfunnel's end-to-end benchmarks: the
// in-process ingest benchmark (server and load generator in one process,
// over loopback) and, in sub-packages, the load generator (loadgen) and its
// command. Results and the commands that produced them are in RESULTS.md.
package benchmarks
