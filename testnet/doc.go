// Package testnet boots networks of spotmesh nodes in one process for
// tests (over go-libp2p's mocknet, or real TCP on loopback). Its
// subpackage procnet runs them as separate daemons, for operators and
// for the demo.
//
// Tests call New(t, n, opts...), which returns started nodes and stops them
// with t.Cleanup; Start and Close do the same outside tests.
package testnet
