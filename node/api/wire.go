package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/protocol"
)

// The JSON bodies of the API, as both the server and the Client see them.
// docs/openapi.yaml describes the same shapes; change both together.

// Duration is a time.Duration that JSON reads and writes as a Go duration
// string: "72h", "90s", "1h30m".
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(protocol.FormatDuration(time.Duration(d)))
}

// UnmarshalJSON implements json.Unmarshaler. A bad value is reported as a
// *json.UnmarshalTypeError, so that the decoder names the field.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: durationType}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("string %q", s), Type: durationType}
	}
	*d = Duration(v)
	return nil
}

var durationType = reflect.TypeFor[Duration]()

// Health is the body of GET /healthz.
type Health struct {
	Status string `json:"status"` // "ok"
}

// IDResponse is the body of GET /v1/id: who and where the node is.
type IDResponse struct {
	PeerID peer.ID `json:"peer_id"`
	// Addrs are the p2p multiaddrs, each ending in /p2p/<peer id>.
	Addrs   []string `json:"addrs,omitempty"`
	APIAddr string   `json:"api_addr,omitempty"`
	// GatewayAddr is the host:port of the node's read-only appliance
	// gateway (GET http://<gateway_addr>/ipfs/<cid>).
	GatewayAddr string    `json:"gateway_addr,omitempty"`
	Version     string    `json:"version,omitempty"`
	Started     time.Time `json:"started,omitzero"`
}

// Peer is one connected peer.
type Peer struct {
	ID    peer.ID  `json:"id"`
	Addrs []string `json:"addrs"`
	// Latency is the last measured round trip; absent when unknown.
	Latency Duration `json:"latency,omitzero"`
}

// PeersResponse is the body of GET /v1/peers.
type PeersResponse struct {
	Peers []Peer `json:"peers"`
}

// ConnectRequest is the body of POST /v1/peers.
type ConnectRequest struct {
	// Addr is a multiaddr ending in /p2p/<peer id>.
	Addr string `json:"addr"`
}

// ConnectResponse is the answer to POST /v1/peers.
type ConnectResponse struct {
	PeerID peer.ID `json:"peer_id"`
}

// Hardware is a hardware profile; sizes in bytes.
type Hardware struct {
	Profile  string `json:"profile"`
	VCPU     uint32 `json:"vcpu"`
	Memory   uint64 `json:"memory"`
	Disk     uint64 `json:"disk"`
	GPUModel string `json:"gpu_model"`
	GPUs     uint32 `json:"gpus"`
	Arch     string `json:"arch"`
}

// Offer is a signed offer: every field of protocol.Offer, plus its CID,
// its offer ID (seller/key), its price in words and, for book entries, when
// this node received it.
type Offer struct {
	OfferID          string         `json:"offer_id"`
	CID              string         `json:"cid"`
	Version          uint64         `json:"version"`
	Seller           peer.ID        `json:"seller"`
	Key              string         `json:"key"`
	Region           string         `json:"region"`
	Hardware         Hardware       `json:"hardware"`
	Slots            uint32         `json:"slots"`
	Price            protocol.Price `json:"price"`
	PriceText        string         `json:"price_text"`
	MinLease         Duration       `json:"min_lease"`
	MaxLease         Duration       `json:"max_lease"`
	Renewable        bool           `json:"renewable"`
	Formats          []string       `json:"formats"`
	MaxApplianceSize uint64         `json:"max_appliance_size"`
	ReceiptInterval  Duration       `json:"receipt_interval"`
	PaymentGrace     Duration       `json:"payment_grace"`
	PerBuyerCap      uint32         `json:"per_buyer_cap"`
	Paused           bool           `json:"paused"`
	Addrs            []string       `json:"addrs"`
	IssuedAt         time.Time      `json:"issued_at"`
	ExpiresAt        time.Time      `json:"expires_at"`
	Withdrawn        bool           `json:"withdrawn"`
	Sig              []byte         `json:"sig,omitempty"`
	// ReceivedAt is set on book entries only.
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// OfferSpec is the body of POST /v1/offers: what a seller states, the
// node fills in the rest. Zero durations, an empty key and empty formats
// take the node's defaults.
type OfferSpec struct {
	Key              string         `json:"key,omitempty"`
	Region           string         `json:"region"`
	Hardware         Hardware       `json:"hardware"`
	Slots            uint32         `json:"slots"`
	Price            protocol.Price `json:"price"`
	MinLease         Duration       `json:"min_lease"`
	MaxLease         Duration       `json:"max_lease"`
	Renewable        bool           `json:"renewable"`
	Formats          []string       `json:"formats"`
	MaxApplianceSize uint64         `json:"max_appliance_size"`
	ReceiptInterval  Duration       `json:"receipt_interval"`
	PaymentGrace     Duration       `json:"payment_grace"`
	PerBuyerCap      uint32         `json:"per_buyer_cap"`
	TTL              Duration       `json:"ttl"`
	// Until ends republishing; absent means until withdrawn.
	Until time.Time `json:"until,omitzero"`
}

// OfferStatus is one of the node's own offers.
type OfferStatus struct {
	Key  string    `json:"key"`
	Spec OfferSpec `json:"spec"`
	// Current is the newest signed copy published; absent before the first.
	Current *Offer `json:"current,omitempty"`
	CID     string `json:"cid,omitempty"`
	// Withdrawn: a signed withdrawal went out; no more copies follow.
	Withdrawn bool `json:"withdrawn"`
	// NextPublish is when the next copy goes out; absent when none will.
	NextPublish time.Time `json:"next_publish,omitzero"`
}

// OffersResponse is the body of GET /v1/offers.
type OffersResponse struct {
	Offers []OfferStatus `json:"offers"`
}

// BookResponse is the body of GET /v1/book.
type BookResponse struct {
	Offers []Offer `json:"offers"`
	// Total is the number of live offers in the book, matching or not.
	Total int `json:"total"`
}

func cidString(c cid.Cid) string {
	if !c.Defined() {
		return ""
	}
	return c.String()
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func offerJSON(o *protocol.Offer, c cid.Cid) Offer {
	return Offer{
		OfferID: o.ID().String(),
		CID:     cidString(c),
		Version: o.Version,
		Seller:  o.Seller,
		Key:     o.Key,
		Region:  o.Region,
		Hardware: Hardware{
			Profile: o.Hardware.Profile, VCPU: o.Hardware.VCPU, Memory: o.Hardware.Memory, Disk: o.Hardware.Disk,
			GPUModel: o.Hardware.GPUModel, GPUs: o.Hardware.GPUs, Arch: o.Hardware.Arch,
		},
		Slots:            o.Slots,
		Price:            o.Price,
		PriceText:        o.Price.String(),
		MinLease:         Duration(o.MinLease.Std()),
		MaxLease:         Duration(o.MaxLease.Std()),
		Renewable:        o.Renewable,
		Formats:          orEmpty(o.Formats),
		MaxApplianceSize: o.MaxApplianceSize,
		ReceiptInterval:  Duration(o.ReceiptInterval.Std()),
		PaymentGrace:     Duration(o.PaymentGrace.Std()),
		PerBuyerCap:      o.PerBuyerCap,
		Paused:           o.Paused,
		Addrs:            orEmpty(o.Addrs),
		IssuedAt:         o.IssuedAt.Std(),
		ExpiresAt:        o.ExpiresAt.Std(),
		Withdrawn:        o.Withdrawn,
		Sig:              o.Sig,
	}
}

func entryJSON(e market.Entry) Offer {
	o := offerJSON(e.Offer, e.CID)
	o.ReceivedAt = utc(e.ReceivedAt)
	return o
}

func specJSON(s offers.Spec) OfferSpec {
	return OfferSpec{
		Key:    s.Key,
		Region: s.Region,
		Hardware: Hardware{
			Profile: s.Hardware.Profile, VCPU: s.Hardware.VCPU, Memory: s.Hardware.Memory, Disk: s.Hardware.Disk,
			GPUModel: s.Hardware.GPUModel, GPUs: s.Hardware.GPUs, Arch: s.Hardware.Arch,
		},
		Slots:            s.Slots,
		Price:            s.Price,
		MinLease:         Duration(s.MinLease),
		MaxLease:         Duration(s.MaxLease),
		Renewable:        s.Renewable,
		Formats:          orEmpty(s.Formats),
		MaxApplianceSize: s.MaxApplianceSize,
		ReceiptInterval:  Duration(s.ReceiptInterval),
		PaymentGrace:     Duration(s.PaymentGrace),
		PerBuyerCap:      s.PerBuyerCap,
		TTL:              Duration(s.TTL),
		Until:            utc(s.Until),
	}
}

func statusJSON(s offers.Status) OfferStatus {
	st := OfferStatus{
		Key:         s.Spec.Key,
		Spec:        specJSON(s.Spec),
		CID:         cidString(s.CID),
		Withdrawn:   s.Withdrawn,
		NextPublish: utc(s.NextPublish),
	}
	if s.Current != nil {
		o := offerJSON(s.Current, s.CID)
		st.Current = &o
		if st.Key == "" {
			st.Key = s.Current.Key
		}
	}
	return st
}

// Spec checks s and converts it to the node's offers.Spec. The error names
// the first bad field and the form it wants.
func (s OfferSpec) Spec() (offers.Spec, error) {
	bad := func(field string, format string, args ...any) (offers.Spec, error) {
		return offers.Spec{}, fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...))
	}
	if s.Key != "" {
		if err := protocol.ValidateName("key", s.Key); err != nil {
			return bad("key", "%v", err)
		}
	}
	if s.Region == "" {
		return bad("region", "required: a region like eu-de")
	}
	if err := protocol.ValidateRegion(s.Region); err != nil {
		return bad("region", "%v", err)
	}
	hw := s.Hardware
	if err := protocol.ValidateName("profile", hw.Profile); err != nil {
		return bad("hardware.profile", "%v", err)
	}
	if hw.VCPU == 0 {
		return bad("hardware.vcpu", "required: want at least 1")
	}
	if hw.Memory == 0 {
		return bad("hardware.memory", "required: want a size in bytes, like 8589934592 for 8GiB")
	}
	if (hw.GPUs == 0) != (hw.GPUModel == "") {
		return bad("hardware.gpus", "gpus %d with gpu_model %q: give both or neither", hw.GPUs, hw.GPUModel)
	}
	if len(hw.GPUModel) > 64 {
		return bad("hardware.gpu_model", "longer than 64 characters")
	}
	if hw.Arch != "" {
		if err := protocol.ValidateName("arch", hw.Arch); err != nil || len(hw.Arch) > 16 {
			return bad("hardware.arch", "%q: want an architecture as Go names it, like amd64 or arm64", hw.Arch)
		}
	}
	if s.Price.Currency == "" {
		return bad("price", `required: want {"micro": 40000, "currency": "USD"} for 0.04USD/h`)
	}
	if err := s.Price.Validate(); err != nil {
		return bad("price", "%v", err)
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"min_lease", s.MinLease}, {"max_lease", s.MaxLease}, {"receipt_interval", s.ReceiptInterval}, {"payment_grace", s.PaymentGrace}, {"ttl", s.TTL}} {
		if d.v < 0 {
			return bad(d.name, "%s is negative: want a Go duration like 72h", protocol.FormatDuration(d.v.Std()))
		}
	}
	if s.MaxLease == 0 {
		return bad("max_lease", "required: want a Go duration like 72h")
	}
	if s.MinLease > s.MaxLease {
		return bad("min_lease", "%s is longer than max_lease %s", protocol.FormatDuration(s.MinLease.Std()), protocol.FormatDuration(s.MaxLease.Std()))
	}
	if len(s.Formats) > 16 {
		return bad("formats", "%d formats: want at most 16", len(s.Formats))
	}
	for _, f := range s.Formats {
		if err := protocol.ValidateName("format", f); err != nil {
			return bad("formats", "%v", err)
		}
	}
	return offers.Spec{
		Key:    s.Key,
		Region: s.Region,
		Hardware: protocol.Hardware{
			Profile: hw.Profile, VCPU: hw.VCPU, Memory: hw.Memory, Disk: hw.Disk,
			GPUModel: hw.GPUModel, GPUs: hw.GPUs, Arch: hw.Arch,
		},
		Slots:            s.Slots,
		Price:            s.Price,
		MinLease:         s.MinLease.Std(),
		MaxLease:         s.MaxLease.Std(),
		Renewable:        s.Renewable,
		Formats:          s.Formats,
		MaxApplianceSize: s.MaxApplianceSize,
		ReceiptInterval:  s.ReceiptInterval.Std(),
		PaymentGrace:     s.PaymentGrace.Std(),
		PerBuyerCap:      s.PerBuyerCap,
		TTL:              s.TTL.Std(),
		Until:            utc(s.Until),
	}, nil
}

// Appliance is what the node knows of one appliance: the body of
// GET /v1/appliances/{cid} and of the answers of import, pin and unpin.
type Appliance struct {
	// CID is the root of the appliance's DAG.
	CID string `json:"cid"`
	// Name and Format are as given at import or fetch; empty when unknown.
	Name   string `json:"name"`
	Format string `json:"format"`
	// Size is the file's size in bytes.
	Size uint64 `json:"size"`
	// Pinned: some pin holds the appliance, so GC keeps it and the gateway
	// serves it. Pins lists the pins' reasons ("add", "get", "lease:<id>").
	Pinned bool     `json:"pinned"`
	Pins   []string `json:"pins"`
	// Added is when the node first imported or fetched it.
	Added time.Time `json:"added"`
}

// AppliancesResponse is the body of GET /v1/appliances.
type AppliancesResponse struct {
	Appliances []Appliance `json:"appliances"`
}

// FetchRequest is the body of POST /v1/appliances/{cid}/fetch.
type FetchRequest struct {
	// Peers are multiaddrs ending in /p2p/<peer id> of nodes that hold the
	// appliance (any IPFS node will do); with none, the node asks the DHT.
	Peers []string `json:"peers,omitempty"`
	// MaxSize is the largest appliance accepted, in bytes; 0 means the
	// node's limit. The fetch stops as soon as the bytes received pass it.
	MaxSize uint64 `json:"max_size,omitempty"`
	// Transport is auto (the default), bitswap or stream.
	Transport string `json:"transport,omitempty"`
	// Name and Format name the appliance if the node has no record of it.
	Name   string `json:"name,omitempty"`
	Format string `json:"format,omitempty"`
}

// FetchEvent is one line of the answer to POST /v1/appliances/{cid}/fetch,
// a stream of JSON objects, one a line (NDJSON): progress lines, then one
// last line that carries Info (done) or Error (failed).
type FetchEvent struct {
	// Done is the file bytes held so far; Total the size the root
	// declares, 0 until the root has arrived.
	Done  uint64 `json:"done"`
	Total uint64 `json:"total"`
	// Info is set on the last line of a fetch that succeeded.
	Info *Appliance `json:"info,omitempty"`
	// Error is set on the last line of a fetch that failed.
	Error *StreamError `json:"error,omitempty"`
}

// StreamError is an error inside a streamed answer, whose HTTP status
// was sent before the error happened.
type StreamError struct {
	// Message says what was wrong and what to do.
	Message string `json:"message"`
	// Code is one of the Code constants.
	Code string `json:"code"`
	// Status is the HTTP status the error would have had as an answer.
	Status int `json:"status"`
}

// GCResponse is the answer to POST /v1/appliances/gc.
type GCResponse struct {
	// Freed is the bytes of blocks removed.
	Freed uint64 `json:"freed"`
}

func applianceJSON(i appliance.Info) Appliance {
	return Appliance{
		CID:    cidString(i.CID),
		Name:   i.Name,
		Format: i.Format,
		Size:   i.Size,
		Pinned: i.Pinned,
		Pins:   orEmpty(i.Pins),
		Added:  utc(i.Added),
	}
}
