// Package api is a node's local REST API: a small HTTP server on loopback
// that serves the node's identity, peers, own offers, order book and
// appliances as JSON, and its Prometheus metrics, behind a bearer token; and
// the client that the CLI and the test network use to talk to it.
//
// Appliance files travel through it as streams, never held in memory: an
// import is the raw request body, a fetch answers with NDJSON progress lines
// and a last line with the outcome, and content is read with range
// requests. These routes move the connection's deadlines forward while
// bytes flow, so they last as long as their transfer.
//
// The node implements Backend and starts a Server with its token from the
// home directory. Every route is listed once, in Routes; docs/openapi.yaml
// describes each of them, and a test holds the two together.
//
// JSON follows one style everywhere: snake_case fields, sizes in bytes,
// money as {"micro": 40000, "currency": "USD"} per hour, durations as Go
// duration strings ("72h"), times in RFC 3339 UTC. Errors are
// {"error": "what went wrong and what to do", "code": "not_found"}.
package api
