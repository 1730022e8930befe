// Package apitest holds test doubles for the node's API: Fake, a Backend in
// memory with real signed offers and no network, and Serve, which starts an
// api.Server on loopback over any Backend for the length of a test. Tests
// of the API, the CLI and the portal use it instead of a running node.
package apitest
