// Package settle bills leases without a billing server: metering,
// receipts, acks, disputes, settlement and the ledger.
//
// While a seller's instance runs, the seller's node meters it every
// receipt interval (a durable job per lease) and signs a UsageReceipt that
// names the receipt before it. Each receipt is stored, with the job that
// sends it, in one synced transaction, then sent to the buyer on
// /spotmesh/receipt/1.0.0; anything the buyer has not answered is sent
// again until it has, so a partition or a crash of either side loses
// nothing, and a receipt received twice counts once.
//
// The buyer's node checks every receipt (protocol.CheckReceipt: the
// signature, the chain, the period against the previous one and the lease,
// the amount against the price times the time) and its own probes of the
// instance's endpoint, and answers with a signed ReceiptAck or a Dispute
// with a reason; answers are stored with synced writes before they are
// sent. A buyer acknowledges nothing of a chain past a disputed receipt.
//
// Risk stays bounded on both sides: the seller ends an instance whose
// receipts go unacknowledged for longer than the lease's payment grace,
// and when the buyer stops answering altogether it can only Claim the
// acknowledged total plus one receipt interval (protocol.ClaimBound),
// which every node checks.
//
// When a lease ends the seller issues a final receipt and, once the buyer
// has answered every receipt, proposes a Settlement on
// /spotmesh/settle/1.0.0; the buyer countersigns it when it matches its
// own chain (settled) or its disputes (disputed), and both store it.
//
// Each lease's billing changes under its own lock. The buyer keeps its
// billing state, head receipt and lease of each open lease in memory
// (dropped when the lease changes), and one committer writes the answers
// of many leases in one synced transaction, since badger applies commits
// one after the other: a receipt costs the buyer two signature operations
// and a share of an fsync.
//
// The ledger (balances and monthly invoices) is derived on every read
// from the settlements and acknowledged receipts: there is no separate
// balance that could drift.
package settle
