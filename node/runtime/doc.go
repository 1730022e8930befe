// Package runtime is the seller's side of an instance's life: the Driver
// interface through which a node drives its own cloud (capacity and
// hardware profiles, provision from an appliance, state, usage counters,
// terminate), and the Runtime service that polls a driver on a schedule
// and reports state and capacity changes.
//
// Drivers live in subpackages, named by how they run:
//
//   - process runs an appliance bundle as local processes, with the lease's
//     limits as rlimits and, where the machine allows, cgroup v2 limits;
//     its instances outlive the node, which re-adopts them on restart;
//   - http drives a seller's own cloud through the REST contract in
//     docs/driver-http.yaml (testnet/refcloud implements it).
//
// drivertest is the conformance suite every driver passes, and a fake
// driver for the tests of the services that use one.
//
// The node builds one Driver from its configuration and one Runtime over
// it, with a callback that forwards instance state changes to the lease
// service and republishes offers when free capacity changes. The lease
// service provisions and terminates through the Runtime. This package
// imports nothing of the node's other services.
package runtime
