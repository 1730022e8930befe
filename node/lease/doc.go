// Package lease negotiates leases between a buyer's node and a seller's
// node over the libp2p protocol /spotmesh/lease/1.0.0, keeps the seller's
// capacity accounting, and runs the lease state machine on both sides.
//
// # Roles
//
// Every node may buy and sell. As a buyer, Propose sends a signed
// LeaseProposal to the seller of an offer and returns the countersigned
// Lease or a *RejectedError with the seller's reason code; Best walks the
// order book in order and falls back to the next offer on a refusal;
// Renew, End and Refresh act on a lease held. As a seller, the service
// answers those requests: it checks each proposal against its own current
// offer (OfferSource), its deny list, paused offers, per-buyer caps, lease
// lengths and appliance size and format, grants what capacity allows, and
// hands each lease it stores to the Provisioner (the runtime), which
// reports back with SetState.
//
// # Capacity
//
// One goroutine (the capacity owner) holds the used-slot counts. Stream
// handlers decode, authenticate and verify proposals concurrently and
// queue them to the owner, which decides a batch at a time and hands each
// batch of grants to a commit goroutine that signs the leases and writes
// them, with their expiry jobs and the slots they hold, in one durable
// store.Update. Concurrent commits share fsyncs (store's group commit), so
// the seller grants thousands of leases per second and never oversells: a
// slot is counted from the decision on, and released only when the lease's
// instance is terminated. After a restart the owner reloads the held slots
// from the store. Free-slot counts go to the OfferSource, which republishes
// the offer (a sold-out offer shows 0 slots in the books).
//
// # Durable timers
//
// A lease's end is a job (kind "lease.expire") written with the lease, on
// both sides. The seller's job ends the lease and schedules the
// termination ("lease.terminate"), which calls Provisioner.Terminate and
// releases the slots; the buyer's marks its copy ended. A restarted node's
// job queue runs the jobs that came due meanwhile at once, and the others
// keep their times. A buyer's end is sent to the seller by a job
// ("lease.sendend") until the seller has it.
//
// # Key layout
//
// Under v1/lease/ (see store's package documentation):
//
//	v1/lease/sold/<lease id>        the seller's leases: record (CBOR)
//	v1/lease/bought/<lease id>      the buyer's leases: record (CBOR)
//	v1/lease/pending/<proposal cid> the buyer's proposals given up unanswered (CBOR)
//	v1/lease/bprop/<proposal cid>   the buyer's index: lease ID granted on the proposal
//	v1/lease/prop/<proposal cid>    the seller's index: lease ID granted, or "end:<buyer>" after an early end
//	v1/lease/active/<lease id>      the seller's slots held until termination (CBOR)
//	v1/lease/deny/<peer id>         the seller's denied buyers (CBOR)
//
// The wire protocol is specified in docs/protocol/leases.md.
//
// node wires the service: New in node.New (it registers its job handlers
// on the queue before the queue starts), Start once the host is up, Close
// before the queue and the database.
package lease
