// Package appliance moves buyers' VM appliances (disk images, executable
// bundles) between nodes by content addressing.
//
// An appliance is one file imported as an IPFS UnixFS DAG: fixed-size
// chunks stored as raw leaves under CIDv1, linked by a balanced tree of
// dag-pb nodes, so that the root CID names the exact bytes. The package owns
//
//   - the import (boxo's balanced importer, streaming: memory does not grow
//     with the file's size),
//   - the block store (boxo's blockstore over the datastore.Batching that
//     the node's store hands in) and the appliance records kept beside it
//     (name, size, format, pins),
//   - the exchange: boxo's bitswap, client and server, on the node's own
//     libp2p host, so that every node that holds an appliance serves it to
//     any IPFS peer; and the spotmesh DAG stream protocol
//     (/spotmesh/dag/1.0.0, see docs/protocol/appliances.md) that pulls a whole DAG from one
//     peer over one stream, verified block by block, and takes shares of
//     it from connected peers fetching the same appliance at once,
//   - fetching by CID with integrity checks, a size limit counted on the
//     bytes that really arrive, bounded waits and resumption,
//   - pins with reasons (add, get, a lease) and garbage collection,
//   - a read-only, offline HTTP gateway over pinned appliances.
//
// The node constructs one Service with its host, its datastore, its DHT (as
// routing.ContentRouting), a clock and a logger, calls Start, and exposes
// the Service to the REST API, the CLI and the runtime drivers. This
// package imports nothing else of spotmesh: the node hands it the store's
// datastore. The wire formats are in docs/protocol/appliances.md.
//
// # Datastore layout
//
// Inside the datastore handed to New:
//
//	/blocks/<base32 multihash>     block bytes (boxo's blockstore layout)
//	/v1/info/<cidv1>               JSON record: name, size, format, added
//	/v1/pin/<cidv1>/<reason>       JSON record: one pin and when it was set
//
// Keys name roots by their CIDv1 string, so the v0 and v1 forms of one DAG
// share their records. A pin reason is path-escaped in its key.
package appliance
