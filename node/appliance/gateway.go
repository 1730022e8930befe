package appliance

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/gateway"
	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
)

// GatewayHandler returns a read-only HTTP gateway over the node's pinned
// appliances: GET and HEAD of /ipfs/<cid> (boxo's gateway: range requests,
// ETags, ?format=raw and car). It reads local blocks only, so a request
// never triggers a fetch, and it serves only pinned roots: a CID that is
// here but not pinned is refused with 403, one that is not here with 404.
// The node mounts it on a loopback listener.
func (s *Service) GatewayHandler() http.Handler {
	s.gatewayOnce.Do(func() {
		s.gateway = &gatewayHandler{s: s}
		reg := s.cfg.Registerer
		if reg == nil {
			reg = prometheus.NewRegistry()
		}
		backend, err := gateway.NewBlocksBackend(blockservice.New(s.bstore, nil), gateway.WithPrometheusRegistry(reg))
		if err != nil {
			s.gateway.err = err
			return
		}
		s.gateway.inner = gateway.NewHandler(gateway.Config{
			DeserializedResponses: true,
			NoDNSLink:             true,
			DisableHTMLErrors:     true,
			MaxConcurrentRequests: 256,
			MetricsRegistry:       reg,
		}, backend)
	})
	return s.gateway
}

type gatewayHandler struct {
	s     *Service
	inner http.Handler
	err   error // set when the gateway could not be built
}

func (g *gatewayHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.err != nil {
		http.Error(w, "appliance gateway unavailable: "+g.err.Error(), http.StatusInternalServerError)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method "+r.Method+" not allowed: this gateway is read-only", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/ipfs/")
	if !ok {
		http.Error(w, "not found: this gateway serves /ipfs/<cid> of the appliances pinned on this node", http.StatusNotFound)
		return
	}
	seg, _, _ := strings.Cut(rest, "/")
	c, err := cid.Decode(seg)
	if err != nil {
		http.Error(w, fmt.Sprintf("%q is not a CID: want /ipfs/<cid>", seg), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	pins, err := g.s.pinsOf(ctx, c)
	if err != nil {
		http.Error(w, "read pins: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if len(pins) == 0 {
		if here, _ := g.s.bstore.Has(ctx, c); here {
			http.Error(w, fmt.Sprintf("%s is on this node but not pinned; this gateway serves pinned appliances only: pin it first (spotmesh appliance pin %s)", c, c), http.StatusForbidden)
			return
		}
		http.Error(w, fmt.Sprintf("%s is not on this node; this gateway never fetches: get it first (spotmesh appliance get %s)", c, c), http.StatusNotFound)
		return
	}
	g.inner.ServeHTTP(w, r)
}
