// Package store is a node's database: one badger database per node that
// holds records, indexes, the durable job queue and the blocks of
// content-addressed appliances.
//
// It owns the badger directory and the key layout below. The node's
// services (node/market, node/offers, node/lease, node/settle,
// node/appliance, node/runtime) use it through DB, Txn, Queue and the
// go-datastore adapter; nothing else opens the directory.
//
// # Transactions and durability
//
// DB.Update commits durably: it returns after the commit is fsynced, so
// what a node acknowledged survives kill -9 and power loss. Concurrent
// Updates share fsyncs (group commit): badger runs without SyncWrites and a
// syncer goroutine runs fsync rounds back to back; an Update waits for a
// round that started after its commit. DB.UpdateSoft skips the wait, for
// soft state such as the order book cache. DB.View reads a consistent
// snapshot. Write a state change and the jobs it causes in one Update.
//
// # Key layout
//
// Every key starts with the layout version, "v1/", so that a later layout
// can be migrated to beside this one. Key builds keys ("v1/" + parts joined
// by "/"), Prefix the prefix of a path's children (Key + "/"). Segments
// marked <...> are opaque strings chosen by the owner; only the last
// segment of a key may contain "/".
//
//	v1/offer/own/<key>              the seller's own offers (node/offers)
//	v1/book/<seller>/<key>          order book cache, soft state (node/market)
//	v1/rec/<cid>                    records by CID: the DAG-CBOR bytes
//	v1/lease/...                    leases and their indexes (node/lease)
//	v1/receipt/...                  receipts, acks, settlements (node/settle)
//	v1/job/<kind>/<id>              a job: version byte, due, stamp, data (this package)
//	v1/jobdue/<due8>/<kind>/<id>    due-time index of jobs, empty value (this package)
//	v1/ds/<name>/<ds key>           go-datastore adapters, one per name (DB.Datastore)
//	v1/meta/...                     the node's own settings and markers (schema version, ...)
//
// <due8> is the due time as 8 bytes: big-endian unix nanoseconds with the
// sign bit flipped, so that byte order is time order and the queue finds
// the next due job with one seek. A job kind never contains "/"; its ID may.
// A go-datastore key always starts with "/", so v1/ds/blocks + /CIQ... is
// v1/ds/blocks/CIQ....
//
// A package that adds a prefix documents its layout next to its code and
// adds a line here.
//
// # Job queue
//
// Txn.Schedule stores a job (Kind, ID, Due, Data) in the caller's
// transaction; Queue runs each due job's handler, deletes the job when the
// handler succeeds (unless it was scheduled again meanwhile) and retries
// failures with capped exponential backoff. After a restart, jobs that came
// due while the node was down run right after Queue.Start. Jobs run at least
// once: handlers must be idempotent.
//
// # Memory
//
// DefaultOptions shrinks badger's buffers and caches for small machines
// (see Options); values from 32 KiB up, such as appliance blocks, go to
// badger's value log, which is garbage collected every Options.GCInterval.
package store
