package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are one node's Prometheus metrics, in a registry of its own so
// that many nodes in one process never share counters.
type metrics struct {
	reg       *prometheus.Registry
	verdicts  *prometheus.CounterVec
	published prometheus.Counter
	synced    prometheus.Counter
}

func newMetrics(bookLen, peers, mesh func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotmesh_offer_verdicts_total",
			Help: "Offers received, by validation verdict (accept, reject, ignore) and reason.",
		}, []string{"verdict", "reason"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotmesh_offers_published_total",
			Help: "Signed offer copies this node published.",
		}),
		synced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotmesh_offers_synced_total",
			Help: "Offers received from peers by book sync on connect.",
		}),
	}
	m.reg.MustRegister(m.verdicts, m.published, m.synced,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "spotmesh_book_offers",
			Help: "Live offers in the order book.",
		}, bookLen),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "spotmesh_peers",
			Help: "Connected peers.",
		}, peers),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "spotmesh_offers_mesh_peers",
			Help: "Peers in this node's gossipsub mesh for the offers topic.",
		}, mesh),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
