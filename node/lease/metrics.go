package lease

import "github.com/prometheus/client_golang/prometheus"

// metrics are the service's Prometheus metrics (registered on the node's
// registry when Deps.Registerer is set).
type metrics struct {
	answers   *prometheus.CounterVec
	ended     *prometheus.CounterVec
	roundTrip prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotmesh_lease_answers_total",
			Help: "Requests this node answered as a seller: granted, extended, or refused with a reason code.",
		}, []string{"answer", "reason"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotmesh_leases_sold_ended_total",
			Help: "Leases this node sold that ended, by cause.",
		}, []string{"cause"}),
		roundTrip: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spotmesh_lease_round_trip_seconds",
			Help:    "Time from sending a proposal to holding the countersigned lease, as a buyer.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.answers, m.ended, m.roundTrip)
	}
	return m
}
