// Package node is the running spotmesh node: a libp2p host with the node's
// persistent key, the Kademlia DHT under the spotmesh prefix, gossipsub with
// the offers topic and its validators, the node's badger store and job
// queue, the order book, the seller's own offers and the local API.
//
// node.New(cfg) opens the home; Start brings up the network and services;
// Close stops them all, in reverse. The services in the sub-packages know
// each other only through the small interfaces that this package wires.
package node
