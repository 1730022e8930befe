// Package node is the running spotmesh node: a libp2p host with the node's
// persistent key, the Kademlia DHT under the spotmesh prefix, gossipsub with
// the offers topic and its validators, the node's badger store and job
// queue, the order book, the seller's own offers, the appliance store and
// its gateway, the lease service (buyer and seller), the runtime that runs
// the instances of leases sold (the process driver, the http driver for a
// seller's own cloud, or none), the settle service (receipts, settlements,
// the ledger) and the local API.
//
// lease_adapters.go wires the lease service to the rest: the offers
// service as its OfferSource (a copy states the free slots the lease
// service counts), and the runtime as its Provisioner (the appliance is
// fetched from the buyer and pinned for the lease; instance states go back
// to the lease service from the runtime's events).
//
// node.New(cfg) opens the home; Start brings up the network and services;
// Close stops them all, in reverse. The services in the sub-packages know
// each other only through the small interfaces that this package wires.
package node
