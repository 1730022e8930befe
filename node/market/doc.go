// Package market is a buyer node's order book: the sellers' signed offers
// that arrived over gossip, indexed so that a query for "the cheapest
// four-vCPU machines in Europe" walks only the few offers it returns.
//
// The book owns:
//   - the newest copy of every offer (seller, key), and a memory of withdrawn
//     offers until their withdrawal expires, so that an older live copy
//     replayed later is recognised as stale;
//   - price-ordered indexes per region and currency, per hardware profile and
//     per GPU model, trees by expiry and by issue time for those sorts, and
//     an index by seller;
//   - a heap of expiry times behind one timer on the injected clock, which
//     evicts each offer when it expires (queries also filter by the current
//     time, so an expired offer is never returned, even between evictions);
//   - an asynchronous, batched copy of the book in a Persister, so that a
//     restarted node starts warm. Offers are soft state: writes need not be
//     synced, and gossip rebuilds whatever is lost.
//
// The book trusts what it is given: the node's pubsub validator decodes and
// validates each offer (form, fields, times, signature) before calling Add.
// Validators call Check first to ignore stale and duplicate copies cheaply.
//
// Callers: the node wires the book between the offers topic's validator
// (Check, Add) and the local API and portal (Query, Get, Len, Subscribe).
// Offers returned in entries are shared with the book and must not be
// modified.
package market
