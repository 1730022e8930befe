package settle

import "github.com/prometheus/client_golang/prometheus"

// metrics are the service's Prometheus counters (registered on the
// node's registry when Deps.Registerer is set).
type metrics struct {
	issued   prometheus.Counter
	answered *prometheus.CounterVec
	disputes *prometheus.CounterVec
	settled  *prometheus.CounterVec
	claims   prometheus.Counter
	unpaid   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotmesh_receipts_issued_total",
			Help: "Usage receipts this node signed as a seller.",
		}),
		answered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotmesh_receipts_answered_total",
			Help: "Receipts this node answered as a buyer, by answer (ack, dispute, refused).",
		}, []string{"answer"}),
		disputes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotmesh_receipt_disputes_total",
			Help: "Disputes this node made as a buyer, by reason.",
		}, []string{"reason"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotmesh_settlements_total",
			Help: "Settlements this node signed, by state (settled, disputed).",
		}, []string{"state"}),
		claims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotmesh_claims_total",
			Help: "Claims this node made as a seller whose buyer stopped answering.",
		}),
		unpaid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotmesh_leases_ended_unpaid_total",
			Help: "Leases this node ended as a seller because acks lagged past the grace.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.issued, m.answered, m.disputes, m.settled, m.claims, m.unpaid)
	}
	return m
}
