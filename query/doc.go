// Package query serves mailfunnel's read API over HTTP: funnels, campaigns,
// time series, bounces, per-domain deliverability, suppressions (and their
// one write, lifting one), dead letters, and the health and readiness
// probes.
//
// It reads engine state only through the View interface (read-only,
// consistent snapshots at an engine checkpoint) and never sees storage keys.
// Every /v1 endpoint requires the API token as a bearer token. Answers are
// JSON by default; with "Accept: application/vnd.apache.arrow.stream" the
// same rows come as an Arrow IPC stream, for data tools. Errors use the
// contract's {"error": "..."} shape: 400 for bad parameters (naming the
// parameter), 401 for a missing token, 404 for an unknown campaign.
package query
