// Package offers is the seller's side of the order book: the node's own
// offers, signed and published on the offers topic, republished at half of
// each copy's life until withdrawn or until their end, and stored with the
// republish job in one transaction so that a restart loses none.
//
// node wires it with the node's store, job queue, key and a Publisher over
// the gossipsub topic; the API calls Add, List and Withdraw.
package offers
