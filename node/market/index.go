package market

import (
	"slices"
	"strings"
	"time"

	"github.com/google/btree"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/protocol"
)

// item is one copy of an offer as the book holds it: a live offer or a
// remembered withdrawal. The offer is the caller's copy with its strings
// shared with other items where they are equal (seller, region, profile,
// formats, addresses...), which a book of many offers by few sellers in
// few regions repays many times over. Once in the book an item never changes, except heapIdx, so
// entries may point into it; a newer copy is a new item.
type item struct {
	offer   protocol.Offer
	cid     cid.Cid
	recv    int64 // when this node received the copy, unix nanoseconds
	heapIdx int   // position in Book.expiry; -1 once out of it
}

// expires is the offer's ExpiresAt in unix nanoseconds.
func (it *item) expires() int64 { return int64(it.offer.ExpiresAt) * int64(time.Millisecond) }

// issued is the offer's IssuedAt in unix nanoseconds.
func (it *item) issued() int64 { return int64(it.offer.IssuedAt) * int64(time.Millisecond) }

func (it *item) live() bool { return !it.offer.Withdrawn }

func (it *item) entry() Entry {
	return Entry{Offer: &it.offer, CID: it.cid, ReceivedAt: time.Unix(0, it.recv).UTC()}
}

// idLess orders offers by seller, then key: the tie-break of every sort.
func idLess(a, b *item) bool {
	if a.offer.Seller != b.offer.Seller {
		return a.offer.Seller < b.offer.Seller
	}
	return a.offer.Key < b.offer.Key
}

// ent is an offer's element in a region tree: the fields that most filters
// and every sort key test, copied side by side so that a scan reads the
// tree's nodes and touches an item only when a filter needs more (disk,
// profile, GPU model, seller, a rare arch), on a tie, or to return the
// offer.
type ent struct {
	micro   int64
	expires int64 // unix nanoseconds
	issued  int64 // unix nanoseconds
	mem     uint64
	vcpu    uint32
	gpus    uint32
	slots   uint32
	paused  bool
	arch    uint8 // archCode of the offer's Arch
	it      *item
}

// archCode names the common architectures in a byte; 0 is any other.
func archCode(arch string) uint8 {
	switch arch {
	case "amd64":
		return 1
	case "arm64":
		return 2
	}
	return 0
}

func entOf(it *item) ent {
	o := &it.offer
	return ent{
		micro:   o.Price.Micro,
		expires: it.expires(),
		issued:  it.issued(),
		mem:     o.Hardware.Memory,
		vcpu:    o.Hardware.VCPU,
		gpus:    o.Hardware.GPUs,
		slots:   o.Slots,
		paused:  o.Paused,
		arch:    archCode(o.Hardware.Arch),
		it:      it,
	}
}

func entLess(a, b ent) bool {
	if a.micro != b.micro {
		return a.micro < b.micro
	}
	return idLess(a.it, b.it)
}

// btreeDegree suits trees of a few to a few hundred thousand elements: wide
// nodes keep them shallow and their elements contiguous.
const btreeDegree = 32

// regionIdx holds one region's live offers, one price-ordered tree per
// currency.
type regionIdx struct {
	name  string
	n     int
	byCur map[string]*curTree
}

type curTree struct {
	cur string
	t   *btree.BTreeG[ent]
}

// sellerIdx holds every item of one seller, live or withdrawn, by key. It is
// the book's primary index. formats and addrs are the seller's last-seen
// lists, shared by its offers while they do not change.
type sellerIdx struct {
	id      peer.ID
	offers  map[string]*item
	formats []string
	addrs   []string
}

// rankTree is a tree of ranked items: by price for a profile or GPU model,
// or by a sort key. Its elements compare by rank without reading items.
type rankTree = btree.BTreeG[ranked]

// indexes are the book's indexes. Book.mu guards them.
type indexes struct {
	sellers  map[peer.ID]*sellerIdx
	regions  map[string]*regionIdx
	profiles map[string]*rankTree // by price
	gpus     map[string]*rankTree // by price, per lower-case GPU model
	gpuAll   *rankTree            // by price, every offer with GPUs
	// byNewest orders every live offer newest first, so that the portal's
	// "latest offers" over the whole book walks only the few it returns.
	// The other sorts scan the region trees: vCPUs and memory tie across
	// thousands of offers (a tree would compare sellers and keys on every
	// insertion, reading the items), and expiry is rarely asked for; each
	// tree costs every Add an insertion.
	byNewest *rankTree
	expiry   expiryHeap        // every item, live or withdrawn
	strs     map[string]string // interned short strings
	entFree  *btree.FreeListG[ent]
	rankFree *btree.FreeListG[ranked]
	held     int // items: live offers and withdrawals
	live     int
}

func newIndexes() indexes {
	ix := indexes{
		sellers:  make(map[peer.ID]*sellerIdx),
		regions:  make(map[string]*regionIdx),
		profiles: make(map[string]*rankTree),
		gpus:     make(map[string]*rankTree),
		strs:     make(map[string]string),
		entFree:  btree.NewFreeListG[ent](btree.DefaultFreeListSize),
		rankFree: btree.NewFreeListG[ranked](btree.DefaultFreeListSize),
	}
	ix.gpuAll = ix.newRankTree()
	ix.byNewest = ix.newRankTree()
	return ix
}

func (ix *indexes) newRankTree() *rankTree {
	return btree.NewWithFreeListG(btreeDegree, rankedLess, ix.rankFree)
}

// sortTree returns the tree ordered by sort key k, or nil.
func (ix *indexes) sortTree(k SortKey) *rankTree {
	if k == SortNewest {
		return ix.byNewest
	}
	return nil
}

// maxInterned bounds the table of interned strings. Regions, profiles,
// currencies and the like are few; when junk fills the table it starts
// over, which costs only memory.
const maxInterned = 8192

func (ix *indexes) intern(s string) string {
	if v, ok := ix.strs[s]; ok {
		return v
	}
	if len(ix.strs) >= maxInterned {
		clear(ix.strs)
	}
	ix.strs[s] = s
	return s
}

// get returns the item held for id, or nil.
func (ix *indexes) get(id protocol.OfferID) *item {
	if s := ix.sellers[id.Seller]; s != nil {
		return s.offers[id.Key]
	}
	return nil
}

// newItem copies o into a new item, sharing its strings with the book's.
// It does not add the item anywhere.
func (ix *indexes) newItem(o *protocol.Offer, c cid.Cid, now time.Time) *item {
	it := &item{
		offer:   *o,
		cid:     c,
		recv:    now.UnixNano(),
		heapIdx: -1,
	}
	p := &it.offer
	if s := ix.sellers[o.Seller]; s != nil {
		p.Seller = s.id
	}
	p.Region = ix.intern(p.Region)
	p.Price.Currency = ix.intern(p.Price.Currency)
	p.Hardware.Profile = ix.intern(p.Hardware.Profile)
	p.Hardware.Arch = ix.intern(p.Hardware.Arch)
	if p.Hardware.GPUModel != "" {
		p.Hardware.GPUModel = ix.intern(p.Hardware.GPUModel)
	}
	return it
}

// adopt files it under its seller, creating the seller's entry, and shares
// the seller's formats and addresses with it.
func (ix *indexes) adopt(it *item) {
	o := &it.offer
	s := ix.sellers[o.Seller]
	if s == nil {
		s = &sellerIdx{id: o.Seller, offers: make(map[string]*item, 1)}
		ix.sellers[s.id] = s
	}
	if slices.Equal(s.formats, o.Formats) {
		o.Formats = s.formats
	} else {
		s.formats = make([]string, len(o.Formats))
		for i, f := range o.Formats {
			s.formats[i] = ix.intern(f)
		}
		o.Formats = s.formats
	}
	if slices.Equal(s.addrs, o.Addrs) {
		o.Addrs = s.addrs
	} else {
		s.addrs = slices.Clone(o.Addrs)
		o.Addrs = s.addrs
	}
	s.offers[o.Key] = it
}

func gpuKey(model string) string { return strings.ToLower(model) }

// insert adds it to the primary index, the expiry heap and, when live, the
// query indexes. Nothing may be held for its id.
func (ix *indexes) insert(it *item) {
	ix.adopt(it)
	ix.expiry.push(it)
	ix.held++
	if it.live() {
		ix.live++
		ix.index(it)
	}
}

// remove takes it out of every index and the heap.
func (ix *indexes) remove(it *item) {
	o := &it.offer
	if it.heapIdx >= 0 {
		ix.expiry.remove(it.heapIdx)
	}
	if s := ix.sellers[o.Seller]; s != nil && s.offers[o.Key] == it {
		delete(s.offers, o.Key)
		if len(s.offers) == 0 {
			delete(ix.sellers, s.id)
		}
	}
	ix.held--
	if it.live() {
		ix.live--
		ix.unindex(it)
	}
}

// supersede replaces prev, held, by it, a copy of the same offer. A newer
// copy whose region, currency, price, profile and GPUs are unchanged (a
// seller's periodic republishing) takes prev's place in the price trees
// instead of a removal and an insertion.
func (ix *indexes) supersede(prev, it *item) {
	if !prev.live() || !it.live() || !samePlace(&prev.offer, &it.offer) {
		ix.remove(prev)
		ix.insert(it)
		return
	}
	ix.adopt(it)
	ix.expiry.replace(prev, it)
	o := &it.offer
	ix.regions[o.Region].byCur[o.Price.Currency].t.ReplaceOrInsert(entOf(it))
	p := ranked{o.Price.Micro, it}
	ix.profiles[o.Hardware.Profile].ReplaceOrInsert(p)
	if o.Hardware.GPUs > 0 {
		ix.gpus[gpuKey(o.Hardware.GPUModel)].ReplaceOrInsert(p)
		ix.gpuAll.ReplaceOrInsert(p)
	}
	ix.byNewest.Delete(ranked{-prev.issued(), prev})
	ix.byNewest.ReplaceOrInsert(ranked{-it.issued(), it})
}

// samePlace reports whether two copies of an offer sit at the same place
// in the price trees.
func samePlace(a, b *protocol.Offer) bool {
	return a.Price == b.Price && a.Region == b.Region && a.Hardware.Profile == b.Hardware.Profile &&
		(a.Hardware.GPUs > 0) == (b.Hardware.GPUs > 0) && gpuKey(a.Hardware.GPUModel) == gpuKey(b.Hardware.GPUModel)
}

// index adds live item it to the query indexes.
func (ix *indexes) index(it *item) {
	o := &it.offer
	r := ix.regions[o.Region]
	if r == nil {
		r = &regionIdx{name: o.Region, byCur: make(map[string]*curTree, 1)}
		ix.regions[r.name] = r
	}
	ct := r.byCur[o.Price.Currency]
	if ct == nil {
		ct = &curTree{cur: o.Price.Currency, t: btree.NewWithFreeListG(btreeDegree, entLess, ix.entFree)}
		r.byCur[ct.cur] = ct
	}
	ct.t.ReplaceOrInsert(entOf(it))
	r.n++

	p := ranked{o.Price.Micro, it}
	pt := ix.profiles[o.Hardware.Profile]
	if pt == nil {
		pt = ix.newRankTree()
		ix.profiles[o.Hardware.Profile] = pt
	}
	pt.ReplaceOrInsert(p)
	if o.Hardware.GPUs > 0 {
		k := gpuKey(o.Hardware.GPUModel)
		gt := ix.gpus[k]
		if gt == nil {
			gt = ix.newRankTree()
			ix.gpus[k] = gt
		}
		gt.ReplaceOrInsert(p)
		ix.gpuAll.ReplaceOrInsert(p)
	}
	ix.byNewest.ReplaceOrInsert(ranked{-it.issued(), it})
}

// unindex takes live item it out of the query indexes.
func (ix *indexes) unindex(it *item) {
	o := &it.offer
	e := entOf(it)
	if r := ix.regions[o.Region]; r != nil {
		if ct := r.byCur[o.Price.Currency]; ct != nil {
			if _, ok := ct.t.Delete(e); ok {
				r.n--
			}
			if ct.t.Len() == 0 {
				delete(r.byCur, ct.cur)
			}
		}
		if r.n == 0 {
			delete(ix.regions, r.name)
		}
	}
	p := ranked{o.Price.Micro, it}
	if pt := ix.profiles[o.Hardware.Profile]; pt != nil {
		pt.Delete(p)
		if pt.Len() == 0 {
			delete(ix.profiles, o.Hardware.Profile)
		}
	}
	if o.Hardware.GPUs > 0 {
		k := gpuKey(o.Hardware.GPUModel)
		if gt := ix.gpus[k]; gt != nil {
			gt.Delete(p)
			if gt.Len() == 0 {
				delete(ix.gpus, k)
			}
		}
		ix.gpuAll.Delete(p)
	}
	ix.byNewest.Delete(ranked{-it.issued(), it})
}

// expiryHeap is a min-heap of items by expiry time. The book's timer is set
// on its root, so eviction costs O(log n) per offer, not a scan.
type expiryHeap []*item

func (h *expiryHeap) push(it *item) {
	it.heapIdx = len(*h)
	*h = append(*h, it)
	h.up(it.heapIdx)
}

// peek returns the earliest-expiring item, or nil.
func (h expiryHeap) peek() *item {
	if len(h) == 0 {
		return nil
	}
	return h[0]
}

// replace puts it in prev's place and restores the order.
func (h expiryHeap) replace(prev, it *item) {
	i := prev.heapIdx
	prev.heapIdx = -1
	h[i] = it
	it.heapIdx = i
	if !h.down(i) {
		h.up(i)
	}
}

func (h *expiryHeap) remove(i int) {
	s := *h
	n := len(s) - 1
	s[i].heapIdx = -1
	if i != n {
		s[i] = s[n]
		s[i].heapIdx = i
	}
	s[n] = nil
	*h = s[:n]
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].expires() <= h[i].expires() {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h expiryHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h[r].expires() < h[l].expires() {
			j = r
		}
		if h[i].expires() <= h[j].expires() {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
