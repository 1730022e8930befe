// Package procnet boots operators' test networks of real spotmesh
// processes on loopback (or in network namespaces, below): one bootstrap
// node, sellers with offers and buyers, each a 'spotmesh run' daemon of
// the same binary in its own session, with its own home, key and config. The testnet package next
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
// Several hosts: with Config.Netns (as root, with the ip command of
// iproute2), each node runs in a network namespace of its own, as if on
// a host of its own, all joined by a bridge on this machine whose host
// side has an address too, so that the CLI and Status reach each node's
// API at its namespace's address. Its p2p address and its instances are
// on that address as well; its gateway stays on its own loopback. The
// names (bridge smb-<h>, namespaces sm-<h>-<node>, links smv-<h>-<i>)
// hold a hash of the directory, the subnet is a /24 of 198.18.0.0/15 not
// in use on the host, and the manifest records them all before they are
// made (see netns.go). Partition cuts nodes off from the rest by moving
// their links to a bridge of their own, which the host still reaches;
// Heal moves them back. Down removes the namespaces, links and bridges
// the testnet made, and nothing else; Start makes them again. The
// daemons are started as 'ip netns exec <ns> <dir>/bin/spotmesh run',
// which execs in place, so the PID recorded is the daemon's.
//
// The CLI's 'spotmesh testnet' verbs (cmd/spotmesh/testnet.go) and
// 'spotmesh demo' call this package. It is Linux-only: on other systems
// its operations return ErrUnsupported.
package procnet
