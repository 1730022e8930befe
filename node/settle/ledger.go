package settle

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// Receipts returns a lease's receipts as this node holds them, in order,
// with the buyer's answers.
func (s *Service) Receipts(id cid.Cid) ([]Receipt, error) {
	var out []Receipt
	err := s.db.View(func(t *store.Txn) error {
		if _, _, err := s.stateOf(t, id); err != nil {
			return err
		}
		answers := make(map[string][]byte)
		if err := t.Iterate(ansPrefix(id), func(k, v []byte) error {
			answers[string(k[bytes.LastIndexByte(k, '/')+1:])] = bytes.Clone(v)
			return nil
		}); err != nil {
			return err
		}
		return t.Iterate(rcptPrefix(id), func(k, raw []byte) error {
			r, err := protocol.DecodeUsageReceipt(raw)
			if err != nil {
				return fmt.Errorf("stored receipt %s: %w", k, err)
			}
			rc := protocol.CIDOf(raw)
			rec := Receipt{CID: rc, Receipt: r}
			if a := answers[string(k[bytes.LastIndexByte(k, '/')+1:])]; len(a) > 1 {
				rec.Answered = true
				switch a[0] {
				case ansAck:
					rec.Acked = true
				case ansDispute:
					if d, err := protocol.DecodeDispute(a[1:]); err == nil {
						rec.Dispute = d
					}
				}
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("receipts of lease %s: %w", id, err)
	}
	return out, nil
}

// stateOf reads a lease's state, sold or bought; a lease that has no
// billing yet reads as open and empty.
func (s *Service) stateOf(t *store.Txn, id cid.Cid) (*state, bool, error) {
	for _, sold := range []bool{false, true} {
		st, ok, err := getState(t, sold, id)
		if err != nil {
			return nil, false, err
		}
		if ok {
			return st, sold, nil
		}
	}
	for _, sold := range []bool{false, true} {
		l, err := s.leases.Lease(id, sold)
		if err == nil {
			return newState(sold, l), sold, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("%w: this node holds no receipts or settlement of lease %s ('settle ls' lists them)", ErrNotFound, id)
}

// Summary returns the billing of one lease.
func (s *Service) Summary(id cid.Cid) (*Summary, error) {
	var out *Summary
	err := s.db.View(func(t *store.Txn) error {
		st, _, err := s.stateOf(t, id)
		if err != nil {
			return err
		}
		out, err = summarize(id, st)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("settlement of lease %s: %w", id, err)
	}
	return out, nil
}

// Summaries returns the billing of every lease this node sold or bought,
// the most recently changed first.
func (s *Service) Summaries() ([]*Summary, error) {
	var out []*Summary
	err := s.db.View(func(t *store.Txn) error {
		for _, pfx := range [][]byte{soldPrefix, boughtPrefix} {
			err := t.Iterate(pfx, func(k, v []byte) error {
				id, err := cid.Decode(string(k[len(pfx):]))
				if err != nil {
					return nil
				}
				var st state
				if err := storedDec.Unmarshal(v, &st); err != nil {
					return fmt.Errorf("stored billing of lease %s: %w", id, err)
				}
				sm, err := summarize(id, &st)
				if err != nil {
					return err
				}
				out = append(out, sm)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("settlements: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Updated.After(out[j].Updated) })
	return out, nil
}

func summarize(id cid.Cid, st *state) (*Summary, error) {
	other, err := peerOf(st.Counterparty)
	if err != nil {
		return nil, err
	}
	sm := &Summary{
		Lease: id, Sold: st.Sold, Counterparty: other, Currency: st.Currency,
		Status: st.Status, Receipts: st.Seq, Acked: st.AckedSeq,
		Total: st.Total, AckedTotal: st.AckedTotal, Final: st.Final,
		Updated: time.Unix(0, st.Updated).UTC(),
	}
	if sm.Status == "" {
		sm.Status = StatusOpen
	}
	for _, raw := range st.Disputes {
		if d, err := protocol.DecodeDispute(raw); err == nil {
			sm.Disputes = append(sm.Disputes, d)
		}
	}
	if st.Settlement != nil {
		if set, err := protocol.DecodeSettlement(st.Settlement); err == nil {
			sm.Settlement = set
		}
	}
	if st.Claim != nil {
		if c, err := protocol.DecodeClaim(st.Claim, protocol.DefaultLimits()); err == nil {
			sm.Claim = c
		}
	}
	return sm, nil
}

// owed is what the buyer of a lease owes by its ledger: the settled total
// when settled, else the acknowledged total.
func (sm *Summary) owed() int64 {
	if sm.Settlement != nil {
		return sm.Settlement.Total
	}
	return sm.AckedTotal
}

// Balances derives what each counterparty and this node owe each other,
// per currency, from the settlements and acknowledged receipts.
func (s *Service) Balances() ([]Balance, error) {
	sums, err := s.Summaries()
	if err != nil {
		return nil, err
	}
	type key struct {
		p peer.ID
		c string
	}
	m := make(map[key]*Balance)
	for _, sm := range sums {
		k := key{sm.Counterparty, sm.Currency}
		b := m[k]
		if b == nil {
			b = &Balance{Counterparty: sm.Counterparty, Currency: sm.Currency}
			m[k] = b
		}
		b.Leases++
		owed := sm.owed()
		if sm.Sold {
			b.Receivable += owed
		} else {
			b.Payable += owed
		}
		if sm.Status == StatusClaimed && sm.Claim != nil && sm.Claim.Amount > owed {
			b.Claimed += sm.Claim.Amount - owed
		}
	}
	out := make([]Balance, 0, len(m))
	for _, b := range m {
		b.Net = b.Receivable - b.Payable
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Counterparty != out[j].Counterparty {
			return out[i].Counterparty < out[j].Counterparty
		}
		return out[i].Currency < out[j].Currency
	})
	return out, nil
}

// Invoice gathers the acknowledged receipts whose period ends in the month
// of t (UTC), one line per lease.
func (s *Service) Invoice(t time.Time) (*Invoice, error) {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	sums, err := s.Summaries()
	if err != nil {
		return nil, err
	}
	inv := &Invoice{Month: start, Receivable: map[string]int64{}, Payable: map[string]int64{}}
	for _, sm := range sums {
		if sm.Acked == 0 {
			continue
		}
		line := InvoiceLine{Lease: sm.Lease, Sold: sm.Sold, Counterparty: sm.Counterparty, Currency: sm.Currency, Status: sm.Status}
		err := s.db.View(func(tx *store.Txn) error {
			return tx.Iterate(rcptPrefix(sm.Lease), func(_, raw []byte) error {
				r, err := protocol.DecodeUsageReceipt(raw)
				if err != nil {
					return err
				}
				if r.Seq > sm.Acked {
					return errStop
				}
				to := r.To.Std()
				if to.Before(start) || !to.Before(end) {
					return nil
				}
				if line.Receipts == 0 {
					line.From = r.From.Std()
				}
				line.Receipts++
				line.To = to
				line.Billed += protocol.Millis(r.To - r.From).Std()
				line.Amount += r.Amount
				return nil
			})
		})
		if err != nil && err != errStop {
			return nil, fmt.Errorf("invoice: lease %s: %w", sm.Lease, err)
		}
		if line.Receipts == 0 {
			continue
		}
		inv.Lines = append(inv.Lines, line)
		if sm.Sold {
			inv.Receivable[sm.Currency] += line.Amount
		} else {
			inv.Payable[sm.Currency] += line.Amount
		}
	}
	sort.Slice(inv.Lines, func(i, j int) bool {
		a, b := inv.Lines[i], inv.Lines[j]
		if !a.From.Equal(b.From) {
			return a.From.Before(b.From)
		}
		return strings.Compare(a.Lease.String(), b.Lease.String()) < 0
	})
	return inv, nil
}

var errStop = fmt.Errorf("stop")
