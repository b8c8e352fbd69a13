// Package duckdbtest reads mailfunnel's Parquet export with a real DuckDB.
//
// It is its own module so that the server builds without cgo: only this
// test links DuckDB (github.com/duckdb/duckdb-go/v2, which bundles a static
// libduckdb). Run it from the repository root with
//
//	cd export/duckdbtest && go test -count=1 ./...
package duckdbtest
