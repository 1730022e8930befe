package market

import (
	"strings"

	"github.com/google/btree"
)

// Query returns the live offers that match q, in q's order, at most q.Limit
// of them (DefaultLimit when 0). It never returns an expired offer, even
// one not yet evicted.
//
// The book answers from the smallest candidate set among its indexes: the
// seller's offers, the profile's, the GPU model's (or every GPU offer's),
// or the region trees that the region prefix and currency select. Every
// tree is ordered by price, so a price-sorted query with a limit stops
// after the few offers it needs; other sorts scan the candidates and keep
// the best Limit in a heap. Region trees carry the fields most filters and
// every sort key test, so a scan reads an offer only to return it or to
// test a field they lack.
func (b *Book) Query(q Query) []Entry {
	f, ok := compile(q)
	if !ok {
		return nil
	}
	now := b.clk.Now().UnixNano()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if q.CID.Defined() {
		it := b.byCopy(q.CID, now)
		if it == nil || it.offer.Paused && !q.IncludePaused {
			return nil
		}
		return []Entry{it.entry()}
	}
	top := b.search(&f, now)
	out := make([]Entry, len(top))
	for i, r := range top {
		out[i] = r.it.entry()
	}
	return out
}

// filter is a compiled query.
type filter struct {
	q        Query
	region   string // lower-case region prefix
	cur      string // currency, "" for any
	capOn    bool   // price is capped at cap
	cap      int64
	gpuModel string // lower-case
	limit    int
	sort     SortKey
	arch     uint8 // archCode of q.Arch
	// needItem: a region tree's elements do not carry every field the
	// query tests, so a scan must read the item.
	needItem bool
}

func compile(q Query) (filter, bool) {
	f := filter{
		q:        q,
		region:   strings.ToLower(q.RegionPrefix),
		cur:      strings.ToUpper(q.Currency),
		gpuModel: gpuKey(q.GPUModel),
		limit:    q.Limit,
		sort:     q.Sort,
	}
	if mc := strings.ToUpper(q.MaxPrice.Currency); mc != "" {
		if f.cur != "" && f.cur != mc {
			return f, false
		}
		f.cur, f.capOn, f.cap = mc, true, q.MaxPrice.Micro
	}
	if f.limit <= 0 {
		f.limit = DefaultLimit
	}
	switch f.sort {
	case SortVCPU, SortMemory, SortExpires, SortNewest:
	default:
		f.sort = SortPrice
	}
	f.arch = archCode(q.Arch)
	f.needItem = q.Disk != (Range{}) || q.Profile != "" || (q.Arch != "" && f.arch == 0) || q.GPUModel != "" || q.Seller != ""
	return f, true
}

// ranked is a candidate result: its rank under the query's sort (lower
// first) and the item. Ranks compare without reading the item; equal ranks
// break by seller and key.
type ranked struct {
	rank int64
	it   *item
}

func rankedLess(a, b ranked) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return idLess(a.it, b.it)
}

// descending ranks a quantity sorted largest first.
func descending(v uint64) int64 { return -int64(min(v, 1<<63-1)) }

// rankEnt is an offer's rank under sort k.
func rankEnt(k SortKey, e *ent) int64 {
	switch k {
	case SortVCPU:
		return descending(uint64(e.vcpu))
	case SortMemory:
		return descending(e.mem)
	case SortExpires:
		return -e.expires
	case SortNewest:
		return -e.issued
	}
	return e.micro
}

func (f *filter) rankItem(it *item) int64 {
	e := entOf(it)
	return rankEnt(f.sort, &e)
}

// regionMatch reports whether region is prefix or lies under it.
func regionMatch(region, prefix string) bool {
	if prefix == "" || region == prefix {
		return true
	}
	return len(region) > len(prefix) && region[len(prefix)] == '-' && strings.HasPrefix(region, prefix)
}

// matchEnt tests the fields a region tree's element carries, but the price
// cap, which the walk tests.
func (f *filter) matchEnt(e *ent, now int64) bool {
	q := &f.q
	return e.expires > now &&
		(!e.paused || q.IncludePaused) &&
		e.slots >= q.MinSlots &&
		q.VCPU.Contains(uint64(e.vcpu)) &&
		q.Memory.Contains(e.mem) &&
		q.GPUs.Contains(uint64(e.gpus)) &&
		(f.arch == 0 || e.arch == f.arch)
}

// matchItem tests every filter.
func (f *filter) matchItem(it *item, now int64) bool {
	q := &f.q
	o := &it.offer
	h := &o.Hardware
	return it.expires() > now && !o.Withdrawn &&
		(!o.Paused || q.IncludePaused) &&
		o.Slots >= q.MinSlots &&
		(f.cur == "" || o.Price.Currency == f.cur) &&
		(!f.capOn || o.Price.Micro <= f.cap) &&
		q.VCPU.Contains(uint64(h.VCPU)) &&
		q.Memory.Contains(h.Memory) &&
		q.Disk.Contains(h.Disk) &&
		q.GPUs.Contains(uint64(h.GPUs)) &&
		regionMatch(o.Region, f.region) &&
		(q.Profile == "" || h.Profile == q.Profile) &&
		(q.Arch == "" || h.Arch == q.Arch) &&
		(f.gpuModel == "" || strings.EqualFold(h.GPUModel, f.gpuModel)) &&
		(q.Seller == "" || o.Seller == q.Seller)
}

// smallSource is a candidate count under which the book scans a seller,
// profile or GPU set without sizing the region trees, or scans rather than
// walk a sort tree.
const smallSource = 256

// walkCost is how many times dearer a sort tree's element is to test than
// a region tree's: it must read the item, mostly from main memory.
const walkCost = 4

// search returns the best f.limit matches in order. b.mu is held.
func (b *Book) search(f *filter, now int64) []ranked {
	q := &f.q
	top := topK{limit: f.limit}
	var (
		seller *sellerIdx
		tree   *rankTree
		trees  []*btree.BTreeG[ent]
		n      = -1
	)
	if q.Seller != "" {
		if seller = b.ix.sellers[q.Seller]; seller == nil {
			return nil
		}
		n = len(seller.offers)
	}
	consider := func(t *rankTree) {
		if n < 0 || t.Len() < n {
			seller, tree, n = nil, t, t.Len()
		}
	}
	if q.Profile != "" {
		pt := b.ix.profiles[q.Profile]
		if pt == nil {
			return nil
		}
		consider(pt)
	}
	if f.gpuModel != "" {
		gt := b.ix.gpus[f.gpuModel]
		if gt == nil {
			return nil
		}
		consider(gt)
	} else if q.GPUs.Min > 0 {
		consider(b.ix.gpuAll)
	}
	if n < 0 || n > smallSource {
		var rts []*btree.BTreeG[ent]
		rn := 0
		for name, r := range b.ix.regions {
			if !regionMatch(name, f.region) {
				continue
			}
			if f.cur != "" {
				if ct := r.byCur[f.cur]; ct != nil {
					rts = append(rts, ct.t)
					rn += ct.t.Len()
				}
				continue
			}
			for _, ct := range r.byCur {
				rts = append(rts, ct.t)
				rn += ct.t.Len()
			}
		}
		if n < 0 || rn <= n {
			seller, tree, trees, n = nil, nil, rts, rn
		}
	}

	// A sort other than price walks its sort tree when the candidates are
	// many, as long as the walk costs less than scanning them would.
	if st := b.ix.sortTree(f.sort); st != nil && n > smallSource {
		if walkSortTree(st, f, now, &top, n/walkCost) {
			return top.sorted()
		}
		top = topK{limit: f.limit}
	}
	switch {
	case seller != nil:
		for _, it := range seller.offers {
			if f.matchItem(it, now) {
				top.push(ranked{f.rankItem(it), it})
			}
		}
	case tree != nil:
		scanItems(tree, f, now, &top)
	default:
		for _, t := range trees {
			scanEnts(t, f, now, &top)
		}
	}
	return top.sorted()
}

// walkSortTree walks a sort tree best first until the results are known or
// budget elements are spent; it reports whether they were known in time.
func walkSortTree(t *rankTree, f *filter, now int64, top *topK, budget int) bool {
	done := true
	t.Ascend(func(r ranked) bool {
		if top.full() && !rankedLess(r, top.worst()) {
			return false
		}
		if budget--; budget < 0 {
			done = false
			return false
		}
		if f.matchItem(r.it, now) {
			top.push(r)
		}
		return true
	})
	return done
}

// scanEnts walks a region tree in price order. A price cap ends the walk;
// so does, for a price sort, an element no better than the worst kept.
// Elements ranked below the worst kept are skipped without reading their
// items.
func scanEnts(t *btree.BTreeG[ent], f *filter, now int64, top *topK) {
	bySort := f.sort == SortPrice
	t.Ascend(func(e ent) bool {
		if f.capOn && e.micro > f.cap {
			return false
		}
		r := ranked{rankEnt(f.sort, &e), e.it}
		if top.full() {
			w := top.worst()
			if r.rank > w.rank {
				return !bySort
			}
			if r.rank == w.rank && !idLess(e.it, w.it) {
				return !bySort
			}
		}
		if f.matchEnt(&e, now) && (!f.needItem || f.matchItem(e.it, now)) {
			top.push(r)
		}
		return true
	})
}

// scanItems walks a profile or GPU tree in price order, stopping as
// scanEnts does.
func scanItems(t *rankTree, f *filter, now int64, top *topK) {
	bySort := f.sort == SortPrice
	t.Ascend(func(r ranked) bool {
		if f.capOn && r.rank > f.cap {
			return false
		}
		if !bySort {
			r.rank = f.rankItem(r.it)
		}
		if top.full() && !rankedLess(r, top.worst()) {
			return !bySort
		}
		if f.matchItem(r.it, now) {
			top.push(r)
		}
		return true
	})
}

// topK keeps the best limit candidates seen in a heap whose root is the
// worst of them.
type topK struct {
	limit int
	h     []ranked
}

func (t *topK) full() bool    { return len(t.h) >= t.limit }
func (t *topK) worst() ranked { return t.h[0] }

func (t *topK) push(r ranked) {
	if len(t.h) < t.limit {
		t.h = append(t.h, r)
		for i := len(t.h) - 1; i > 0; {
			p := (i - 1) / 2
			if !rankedLess(t.h[p], t.h[i]) {
				break
			}
			t.h[p], t.h[i] = t.h[i], t.h[p]
			i = p
		}
		return
	}
	if !rankedLess(r, t.h[0]) {
		return
	}
	t.h[0] = r
	siftDown(t.h, 0)
}

// siftDown restores the heap (worst at the root) below i.
func siftDown(h []ranked, i int) {
	for n := len(h); ; {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && rankedLess(h[l], h[r]) {
			j = r
		}
		if !rankedLess(h[i], h[j]) {
			return
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

// sorted returns the kept candidates, best first, by heap-sorting in place.
func (t *topK) sorted() []ranked {
	h := t.h
	for n := len(h) - 1; n > 0; n-- {
		h[0], h[n] = h[n], h[0]
		siftDown(h[:n], 0)
	}
	return h
}
