// Package apitest holds test doubles for the node's API: Fake, a Backend in
// memory with real signed offers and no network, and Serve, which starts an
// api.Server on loopback over any Backend for the length of a test, and
// NewAppliances, a real appliance service over an in-memory datastore and
// a mocknet host, to set as Fake.Appl. Tests of the API, the CLI and the
// portal use it instead of a running node.
package apitest
