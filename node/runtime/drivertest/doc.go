// Package drivertest is the conformance suite of runtime drivers, run
// against every implementation (the process driver, the http driver over
// the reference cloud), and the tools it is built from, which drivers'
// own tests use too:
//
//   - Run: the lifecycle every driver must pass: provision a real bundle
//     (a small Go HTTP server built from testdata/echo), wait until its
//     endpoint answers with its lease ID and access key, see its usage
//     counters grow, terminate it, see its endpoint stop and its process
//     go; plus errors, exits, a refused appliance and concurrent leases;
//   - Echo: builds that server; ExecutableBundle and TarBundle package it;
//   - Gateway: imports bundles as UnixFS DAGs the way the node's appliance
//     service does (CIDv1, raw leaves, balanced layout) and serves them
//     over boxo's HTTP gateway, as the node's gateway does, so that an
//     http driver's cloud can pull them by CID;
//   - Fake: an in-memory driver whose instances are HTTP servers in the
//     test process, for the tests of services that use a driver.
//
// Every process the suite sees is killed by PID (checked against its start
// time) when the test ends, whatever the driver did.
package drivertest
