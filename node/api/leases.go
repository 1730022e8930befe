package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
)

// leaseTimeout bounds a request that talks to a seller.
const leaseTimeout = 2 * time.Minute

// leases returns the lease service, or writes 503 and returns nil.
func (s *Server) leases(w http.ResponseWriter, r *http.Request) Leases {
	l := s.b.LeaseService()
	if l == nil {
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, CodeUnavailable,
			"this node has no lease service: it is starting, or runs without one"))
	}
	return l
}

// pathCID reads the path parameter name as a CID, or writes 400.
func (s *Server) pathCID(w http.ResponseWriter, r *http.Request, name string) (cid.Cid, bool) {
	c, err := cid.Decode(r.PathValue(name))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest,
			"%s %q is not a CID: %v: 'spotmesh lease ls' lists the leases", name, r.PathValue(name), err))
		return cid.Undef, false
	}
	return c, true
}

func (s *Server) newLease(w http.ResponseWriter, r *http.Request) {
	var req LeaseRequest
	if err := s.decode(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	bad := func(format string, args ...any) {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, format, args...))
	}
	if (req.OfferCID == "") == (req.Best == nil) {
		bad("give exactly one of offer_cid (the offer to lease) and best (book filters; {} for any offer)")
		return
	}
	if req.For <= 0 {
		bad("field for: want a positive Go duration, like \"2h\"")
		return
	}
	ac, err := cid.Decode(req.Appliance)
	if err != nil {
		bad("field appliance %q is not a CID: %v", req.Appliance, err)
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	p := lease.Params{Slots: req.Slots, Length: req.For.Std(), Appliance: ac, AccessKey: req.SSHKey}
	if a := s.b.Appliances(); a != nil {
		info, err := a.Get(r.Context(), ac)
		if err != nil {
			e := s.mapError("lease: appliance "+req.Appliance, err)
			if e.Code == CodeNotFound {
				e.Message += ": add it first with 'spotmesh appliance add' or fetch it with 'appliance get'"
			}
			s.writeError(w, r, e)
			return
		}
		p.ApplianceSize, p.ApplianceFormat = info.Size, info.Format
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaseTimeout)
	defer cancel()
	var in *lease.Info
	var tried []lease.Attempt
	if req.OfferCID != "" {
		offer, err := s.findOffer(req.OfferCID)
		if err != nil {
			bad("%v", err)
			return
		}
		if offer == nil {
			s.writeError(w, r, errorf(http.StatusNotFound, CodeNotFound,
				"lease: no offer %s in this node's book: every copy of it expired, or it was withdrawn; 'spotmesh book' lists the offers with their CIDs and offer IDs (seller/key)", req.OfferCID))
			return
		}
		in, err = ls.Propose(ctx, offer, p)
		if err != nil {
			s.writeError(w, r, s.leaseError("lease offer "+req.OfferCID, err))
			return
		}
	} else {
		v := url.Values{}
		for k, x := range req.Best {
			v.Set(k, x)
		}
		q, err := ParseBookQuery(v)
		if err != nil {
			bad("field best: %v", err)
			return
		}
		in, tried, err = ls.Best(ctx, q, p)
		if err != nil {
			e := s.leaseError("lease the best offer", err)
			e.Attempts = make([]Attempt, 0, len(tried))
			for _, a := range tried {
				e.Attempts = append(e.Attempts, attemptJSON(a))
			}
			if errors.Is(err, lease.ErrNoOffer) {
				e.Status, e.Code = http.StatusUnprocessableEntity, CodeNoOffer
			}
			s.writeError(w, r, e)
			return
		}
	}
	l := leaseJSON(in)
	for _, a := range tried {
		l.Attempts = append(l.Attempts, attemptJSON(a))
	}
	s.writeJSON(w, http.StatusCreated, l)
}

func attemptJSON(a lease.Attempt) Attempt {
	out := Attempt{OfferID: a.Offer.String(), CID: cidString(a.CID)}
	if a.Err != nil {
		out.Error = a.Err.Error()
	}
	var rej *lease.RejectedError
	if errors.As(a.Err, &rej) {
		out.Reason, out.Words = string(rej.Reason), rej.Reason.Words()
	}
	return out
}

func (s *Server) listLeases(w http.ResponseWriter, r *http.Request) {
	var role lease.Role
	switch v := r.URL.Query().Get("role"); v {
	case "", string(lease.RoleBuyer), string(lease.RoleSeller):
		role = lease.Role(v)
	default:
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "query parameter role %q: want buyer or seller", v))
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	list, err := ls.List(role)
	if err != nil {
		s.writeError(w, r, s.leaseError("list leases", err))
		return
	}
	resp := LeasesResponse{Leases: make([]Lease, 0, len(list))}
	for _, in := range list {
		resp.Leases = append(resp.Leases, leaseJSON(in))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getLease(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathCID(w, r, "id")
	if !ok {
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	in, err := ls.Get(id)
	if err != nil {
		s.writeError(w, r, s.leaseError("lease "+id.String(), err))
		return
	}
	if in.Role == lease.RoleBuyer && in.ID.Defined() && in.State != protocol.StateEnded {
		ctx, cancel := context.WithTimeout(r.Context(), leaseTimeout)
		defer cancel()
		if fresh, err := ls.Refresh(ctx, in.ID); err == nil {
			in = fresh
		} else {
			s.log.Debug("api: refresh lease", "lease", id, "err", err)
		}
	}
	s.writeJSON(w, http.StatusOK, leaseJSON(in))
}

func (s *Server) renewLease(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathCID(w, r, "id")
	if !ok {
		return
	}
	var req RenewRequest
	if err := s.decode(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.For <= 0 {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "field for: want a positive Go duration, like \"1h\""))
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaseTimeout)
	defer cancel()
	in, err := ls.Renew(ctx, id, req.For.Std())
	if err != nil {
		s.writeError(w, r, s.leaseError("renew lease "+id.String(), err))
		return
	}
	s.writeJSON(w, http.StatusOK, leaseJSON(in))
}

func (s *Server) endLease(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathCID(w, r, "id")
	if !ok {
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaseTimeout)
	defer cancel()
	in, err := ls.End(ctx, id)
	if err != nil {
		s.writeError(w, r, s.leaseError("end lease "+id.String(), err))
		return
	}
	s.writeJSON(w, http.StatusOK, leaseJSON(in))
}

func (s *Server) pauseOffer(w http.ResponseWriter, r *http.Request)  { s.setPaused(w, r, true) }
func (s *Server) resumeOffer(w http.ResponseWriter, r *http.Request) { s.setPaused(w, r, false) }

func (s *Server) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	key := r.PathValue("key")
	if err := protocol.ValidateName("key", key); err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "offer %v", err))
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	op, do := "resume", ls.Resume
	if paused {
		op, do = "pause", ls.Pause
	}
	if err := do(r.Context(), key); err != nil {
		e := s.leaseError(op+" offer "+key, err)
		if e.Code == CodeNotFound {
			e.Message = op + " offer: no offer with key \"" + key + "\": list this node's offers with GET /v1/offers"
		}
		s.writeError(w, r, e)
		return
	}
	s.writeJSON(w, http.StatusOK, PauseResponse{Key: key, Paused: paused})
}

func (s *Server) listDenied(w http.ResponseWriter, r *http.Request) {
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	list := ls.ListDenied()
	resp := DeniedResponse{Denied: make([]Denied, 0, len(list))}
	for _, d := range list {
		resp.Denied = append(resp.Denied, Denied{Peer: d.Peer, Note: d.Note, At: utc(d.At)})
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) deny(w http.ResponseWriter, r *http.Request) {
	var req DenyRequest
	if err := s.decode(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Peer == "" {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "field peer: required: the buyer's peer ID, like 12D3KooW..."))
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	if err := ls.Deny(r.Context(), req.Peer, req.Note); err != nil {
		s.writeError(w, r, s.leaseError("deny "+req.Peer.String(), err))
		return
	}
	s.writeJSON(w, http.StatusCreated, Denied{Peer: req.Peer, Note: req.Note})
}

func (s *Server) allow(w http.ResponseWriter, r *http.Request) {
	p, err := peer.Decode(r.PathValue("peer"))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "peer %q: %v: want a peer ID like 12D3KooW...", r.PathValue("peer"), err))
		return
	}
	ls := s.leases(w, r)
	if ls == nil {
		return
	}
	if err := ls.Allow(r.Context(), p); err != nil {
		s.writeError(w, r, s.leaseError("allow "+p.String(), err))
		return
	}
	s.writeJSON(w, http.StatusOK, Denied{Peer: p})
}

func (s *Server) instances(w http.ResponseWriter, r *http.Request) {
	list := s.b.Instances()
	resp := InstancesResponse{Instances: make([]Instance, 0, len(list))}
	for _, in := range list {
		resp.Instances = append(resp.Instances, instanceJSON(in))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

// leaseError maps the lease service's errors; the rest go to mapError.
func (s *Server) leaseError(op string, err error) *Error {
	var rej *lease.RejectedError
	switch {
	case errors.As(err, &rej):
		e := errorf(http.StatusConflict, CodeRejected, "%s: %v", op, err)
		e.Reason, e.Words = string(rej.Reason), rej.Reason.Words()
		return e
	case errors.Is(err, lease.ErrNoOffer):
		return errorf(http.StatusUnprocessableEntity, CodeNoOffer, "%s: %v", op, err)
	case errors.Is(err, lease.ErrNotFound):
		return errorf(http.StatusNotFound, CodeNotFound, "%s: %v", op, err)
	case errors.Is(err, lease.ErrEnded), errors.Is(err, lease.ErrNotRenewable):
		return errorf(http.StatusConflict, CodeConflict, "%s: %v", op, err)
	case errors.Is(err, lease.ErrInvalid):
		return errorf(http.StatusBadRequest, CodeBadRequest, "%s: %v", op, err)
	case errors.Is(err, lease.ErrUnreachable), errors.Is(err, lease.ErrBadAnswer):
		return errorf(http.StatusBadGateway, CodePeerUnreachable, "%s: %v: check that the seller's node runs and is reachable", op, err)
	case errors.Is(err, lease.ErrNotStarted), errors.Is(err, lease.ErrClosed):
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%s: %v: the node is starting or stopping; try again", op, err)
	}
	return s.mapError(op, err)
}

// findOffer finds an offer in the book by the CID of any unexpired copy of
// it (the one held or one it replaced), or by its offer ID (seller/key),
// which names every copy of it.
func (s *Server) findOffer(ref string) (*protocol.Offer, error) {
	if seller, key, ok := strings.Cut(ref, "/"); ok {
		id, err := peer.Decode(seller)
		if err != nil {
			return nil, fmt.Errorf("field offer_cid %q: not a CID, nor an offer ID seller/key with a peer ID: %v", ref, err)
		}
		for _, e := range s.b.Book(market.Query{Seller: id, IncludePaused: true, Limit: math.MaxInt32}) {
			if e.Offer != nil && e.Offer.Key == key {
				return e.Offer, nil
			}
		}
		return nil, nil
	}
	oc, err := cid.Decode(ref)
	if err != nil {
		return nil, fmt.Errorf("field offer_cid %q is not a CID (nor an offer ID seller/key): %v", ref, err)
	}
	// Any unexpired copy names the offer: the book answers with the copy
	// it holds now, which the proposal then names.
	for _, e := range s.b.Book(market.Query{CID: oc, IncludePaused: true, Limit: 1}) {
		if e.Offer != nil {
			return e.Offer, nil
		}
	}
	return nil, nil
}
