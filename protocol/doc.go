// Package protocol is the vocabulary of the spotmesh market: the records that
// cross the network, their one codec (deterministic DAG-CBOR), their one
// signature scheme, and the pure checks that every receiver runs on them.
//
// Nothing here does I/O. A record is validated against a time and a set of
// limits passed in, so the pubsub validators, the stream handlers and the
// local API all apply exactly the same rules. The package imports the
// standard library, libp2p's core crypto and peer packages, go-cid and the
// CBOR codec, and nothing else of spotmesh: every other package may lean on
// it without pulling in a network.
//
// The wire formats are specified in docs/protocol/.
package protocol
