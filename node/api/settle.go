package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/node/settle"
)

// The settle routes read the ledger: a lease's receipts, the settlement of
// each lease, the balance per counterparty and a month's invoice. They
// change nothing.

// settlement returns the settle service, or writes 503 and returns nil.
func (s *Server) settlement(w http.ResponseWriter, r *http.Request) Settlement {
	st := s.b.SettleService()
	if st == nil {
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, CodeUnavailable,
			"this node has no settle service: it is starting, or runs without one"))
	}
	return st
}

// settleLease reads the path parameter name as a lease ID, or writes 400.
func (s *Server) settleLease(w http.ResponseWriter, r *http.Request, name string) (cid.Cid, bool) {
	c, err := cid.Decode(r.PathValue(name))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest,
			"lease %q is not a lease ID: %v: 'spotmesh settle ls' lists the leases with receipts", r.PathValue(name), err))
		return cid.Undef, false
	}
	return c, true
}

func (s *Server) listReceipts(w http.ResponseWriter, r *http.Request) {
	if e := onlyParams(r.URL.Query()); e != nil {
		s.writeError(w, r, e)
		return
	}
	id, ok := s.settleLease(w, r, "id")
	if !ok {
		return
	}
	st := s.settlement(w, r)
	if st == nil {
		return
	}
	list, err := st.Receipts(id)
	if err != nil {
		s.writeError(w, r, s.settleError("receipts of lease "+id.String(), err))
		return
	}
	resp := ReceiptsResponse{Lease: id.String(), Receipts: make([]Receipt, 0, len(list))}
	for _, rc := range list {
		if rc.Receipt == nil {
			continue
		}
		resp.Receipts = append(resp.Receipts, receiptJSON(rc))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) listSettlements(w http.ResponseWriter, r *http.Request) {
	if e := onlyParams(r.URL.Query()); e != nil {
		s.writeError(w, r, e)
		return
	}
	st := s.settlement(w, r)
	if st == nil {
		return
	}
	list, err := st.Summaries()
	if err != nil {
		s.writeError(w, r, s.settleError("list settlements", err))
		return
	}
	resp := SettlementsResponse{Settlements: make([]LeaseSettlement, 0, len(list))}
	for _, sm := range list {
		resp.Settlements = append(resp.Settlements, summaryJSON(sm))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getSettlement(w http.ResponseWriter, r *http.Request) {
	if e := onlyParams(r.URL.Query()); e != nil {
		s.writeError(w, r, e)
		return
	}
	id, ok := s.settleLease(w, r, "lease")
	if !ok {
		return
	}
	st := s.settlement(w, r)
	if st == nil {
		return
	}
	sm, err := st.Summary(id)
	if err != nil {
		s.writeError(w, r, s.settleError("settlement of lease "+id.String(), err))
		return
	}
	s.writeJSON(w, http.StatusOK, summaryJSON(sm))
}

func (s *Server) balance(w http.ResponseWriter, r *http.Request) {
	if e := onlyParams(r.URL.Query()); e != nil {
		s.writeError(w, r, e)
		return
	}
	st := s.settlement(w, r)
	if st == nil {
		return
	}
	list, err := st.Balances()
	if err != nil {
		s.writeError(w, r, s.settleError("balance", err))
		return
	}
	resp := BalanceResponse{Balances: make([]Balance, 0, len(list))}
	for _, b := range list {
		resp.Balances = append(resp.Balances, balanceJSON(b))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) invoice(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := onlyParams(q, "month"); e != nil {
		s.writeError(w, r, e)
		return
	}
	month, err := ParseMonth(q.Get("month"))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "query parameter month: %v", err))
		return
	}
	st := s.settlement(w, r)
	if st == nil {
		return
	}
	inv, err := st.Invoice(month)
	if err != nil {
		s.writeError(w, r, s.settleError("invoice "+month.Format(InvoiceMonthLayout), err))
		return
	}
	s.writeJSON(w, http.StatusOK, invoiceJSON(inv))
}

// ParseMonth reads a month as YYYY-MM, like 2026-11, and returns its first
// instant, UTC.
func ParseMonth(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("required: want a month as YYYY-MM, like 2026-11")
	}
	t, err := time.Parse(InvoiceMonthLayout, s)
	if err != nil || t.Year() < 1970 {
		return time.Time{}, fmt.Errorf("%q: want a month as YYYY-MM, like 2026-11", s)
	}
	return t.UTC(), nil
}

// settleError maps the settle service's errors; the rest go to mapError.
func (s *Server) settleError(op string, err error) *Error {
	switch {
	case errors.Is(err, settle.ErrNotFound):
		// The service's words name the lease and what to do.
		return errorf(http.StatusNotFound, CodeNotFound, "%v", err)
	case errors.Is(err, settle.ErrClosed):
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%s: %v: the node is stopping", op, err)
	}
	return s.mapError(op, err)
}
