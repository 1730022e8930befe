// Package procnet boots operators' test networks of real spotmesh
// processes on loopback: one bootstrap node, sellers with offers and
// buyers, each a 'spotmesh run' daemon of the same binary in its own
// session, with its own home, key and config. The testnet package next
// to it runs nodes inside one process for tests; this one runs them as an
// operator would, so that a node can be killed with SIGKILL and started
// again from its home.
//
// A testnet lives in one directory:
//
//	<dir>/bin/spotmesh     the binary, copied in at Up, so that Start works
//	                       after the original is gone (go run deletes its own)
//	<dir>/testnet.json     the manifest: every node's name, role, home, PID,
//	                       process start time, API address and peer ID
//	<dir>/testnet.lock     flock'd by the operation that changes the testnet
//	<dir>/<name>/          each node's home, with its daemon.log
//
// Up boots a testnet; Open reads one. Status, Start, Kill, Down and LogPath
// act on the nodes the manifest names. Before it sends a signal, procnet
// checks that the PID still runs the testnet's binary with that node's
// home and the recorded start time (/proc/<pid>/stat field 22): a PID that
// fails the check is reported and left alone, so that procnet never
// signals a process it did not start.
//
// Scenario runs the market's whole cycle on a testnet and reports each
// step's time and its checks: offers published and propagated, every
// buyer's appliance imported, its best lease granted, the appliance
// transferred, the instance answering, receipts acknowledged, the lease
// ended and settled identically on both sides, the instance stopped.
// ScenarioConfig.Fault injects a fault (FaultKillSeller). The appliance is
// the testnet's own binary in a bundle, run as its hidden verb _echo, so
// the scenario needs no compiler and no network beyond loopback.
//
// The CLI's 'spotmesh testnet' verbs (cmd/spotmesh/testnet.go) and
// 'spotmesh demo' call this package. It is Linux-only: on other systems
// its operations return ErrUnsupported.
package procnet
