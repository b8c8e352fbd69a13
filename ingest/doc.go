// Package ingest receives provider webhooks over HTTP (Fiber v2) and turns
// them into durable events.
//
// # Contract
//
// POST /v1/webhooks/{provider} and /v1/webhooks/{provider}/{source}. The
// ingest token is accepted as a bearer token, as ?token=, or as the password
// of HTTP basic auth; anything else is 401. The body is handed to the
// provider's Adapter (one per provider, in its own sub-package, registered by
// cmd/mailfunnel), which returns canonical events or an error naming the bad
// element. A rejected body is stored verbatim as a dead letter and answered
// 400 with {"error": ..., "index": ...}: nothing a provider sent is lost.
// Accepted events go to the Appender, and the 200 {"accepted", "duplicates"}
// is sent only after the Appender returns, i.e. after the events are fsynced.
//
// Limits: bodies above Config.BodyLimit are answered 413 by Fiber before the
// handler runs; more than Config.MaxInFlight requests in the append path, a
// full commit queue, or an engine lag above the configured bound are answered
// 503 with Retry-After, so that providers back off and redeliver rather than
// pile up work the server cannot finish.
//
// Fiber reuses the request's byte slices after the handler returns; adapters
// copy what they keep into the events, and dead letters copy the body, so
// nothing crossing into storage aliases Fiber's buffers.
package ingest
