// Package http is the runtime driver for a seller's own cloud: it speaks
// the REST contract of docs/driver-http.yaml, which the cloud implements
// (testnet/refcloud is the reference implementation, and the driver
// conformance suite runs against it in that package's tests).
//
//	GET    /v1/capacity               profiles, total and free resources, utilization
//	GET    /v1/instances              every instance the cloud knows
//	PUT    /v1/instances/{lease_id}   create one: limits, access key, end, and the
//	                                  appliance's CID, size and the URL to pull it
//	GET    /v1/instances/{lease_id}   state, endpoint, usage counters, enforced limits
//	DELETE /v1/instances/{lease_id}   terminate it (200 once ended, 202 while stopping)
//
// The node does not upload the appliance: the cloud pulls it from the
// node's appliance gateway at <gateway>/ipfs/<cid> and must check the
// bytes against the CID (the reference cloud asks for a CAR and verifies
// every block). The cloud keeps its instances across restarts of the node,
// so Recover just lists them. Errors map the contract's codes to the
// runtime's kinds: bad_request → ErrInvalid, not_found → ErrNotFound,
// exists → ErrExists, no_capacity → ErrNoCapacity, appliance_refused →
// ErrAppliance, the rest and transport failures → ErrUnavailable.
//
// Importers name the package httpdriver to keep net/http's name.
package http
