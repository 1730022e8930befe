// Package refcloud is the reference cloud of the http runtime driver: a
// small cloud that implements the REST contract in docs/driver-http.yaml,
// written from that contract alone. It imports nothing of the node, so
// that it shows a seller's own cloud can be built from the document, and
// the node's http driver is tested against it (the driver conformance
// suite, in this package's tests).
//
// Cloud is an http.Handler; cmd/refcloud serves it on an address. It runs
// each instance as the process driver would: it pulls the appliance from
// the URL in the request (the node's gateway, /ipfs/<cid>), asking for a
// CAR (?format=car) and checking every block against its CID, then reads
// the file out of the verified DAG from the requested root, so that the
// bytes it runs are exactly those the CID names, whatever the gateway
// does. The file is a bundle (a tar archive, optionally gzipped, with an
// executable run at its root, or one executable); ./run starts in the
// instance's directory in its own session, with PORT, HOST,
// SPOTMESH_LEASE_ID, SPOTMESH_ACCESS_KEY_FILE and the other variables of
// the process driver, and rlimits for memory (RLIMIT_DATA), disk
// (RLIMIT_FSIZE), CPU time and open files, set with prlimit(2) just after
// the start. It is running once it accepts connections on PORT. DELETE
// sends SIGTERM to its process group and SIGKILL after a grace.
//
// Unlike the process driver, it does not outlive its own process: Close
// stops every instance. It needs Linux (/proc, prlimit).
package refcloud
