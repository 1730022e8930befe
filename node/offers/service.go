package offers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// ErrNotFound: no own offer has that key.
var ErrNotFound = errors.New("no such offer")

// ErrEnded: the offer's --until has passed; it takes no new copies.
var ErrEnded = errors.New("offer ended")

// ErrExists: an offer with that key exists already (live or withdrawn).
var ErrExists = errors.New("offer key in use")

// ErrWithdrawn: the offer was withdrawn and can no longer change.
var ErrWithdrawn = errors.New("offer already withdrawn")

// JobRepublish is the job kind that publishes the next copy of an offer.
const JobRepublish = "offer.republish"

// Publisher sends a signed, encoded offer to the market.
type Publisher interface {
	PublishOffer(ctx context.Context, raw []byte) error
}

// Config holds the service's settings.
type Config struct {
	// DefaultTTL is the life of a copy when the spec sets none.
	DefaultTTL time.Duration
	// DefaultMinLease, DefaultReceiptInterval and DefaultGrace fill specs
	// that leave them out.
	DefaultMinLease        time.Duration
	DefaultReceiptInterval time.Duration
	DefaultGrace           time.Duration
	// DefaultFormats are the appliance formats accepted when a spec names none.
	DefaultFormats []string
	// DefaultMaxAppliance is the largest appliance accepted when unset.
	DefaultMaxAppliance uint64
}

// DefaultConfig returns the defaults a seller gets without flags.
func DefaultConfig() Config {
	return Config{
		DefaultTTL:             10 * time.Minute,
		DefaultMinLease:        time.Minute,
		DefaultReceiptInterval: time.Minute,
		DefaultGrace:           5 * time.Minute,
		DefaultFormats:         []string{"bundle", "qcow2", "raw"},
		DefaultMaxAppliance:    20 << 30,
	}
}

// Service owns the node's own offers.
type Service struct {
	cfg   Config
	db    *store.DB
	key   crypto.PrivKey
	id    peer.ID
	pub   Publisher
	addrs func() []string
	clk   clock.Clock
	lim   protocol.Limits
	log   *slog.Logger

	// mu serialises changes to own offers, so a withdrawal and a republish
	// of the same offer never interleave. It also guards free.
	mu sync.Mutex
	// free, if set, tells the free slots of an offer for its copies.
	free func(key string) (uint32, bool)
}

// stored is an own offer as kept under store.Key("offer", "own", key).
type stored struct {
	Spec      Spec   `json:"spec"`
	Raw       []byte `json:"raw"` // the newest signed copy
	Withdrawn bool   `json:"withdrawn"`
	Next      int64  `json:"next,omitempty"` // unix nanos of the next publish, 0 for none
}

// New makes the service and registers its job handler on q. addrs returns
// the node's current multiaddrs, put into every copy.
func New(cfg Config, db *store.DB, q *store.Queue, key crypto.PrivKey, pub Publisher,
	addrs func() []string, clk clock.Clock, lim protocol.Limits, log *slog.Logger) (*Service, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, db: db, key: key, id: id, pub: pub, addrs: addrs, clk: clk, lim: lim, log: log}
	q.Handle(JobRepublish, s.republish)
	return s, nil
}

func ownKey(key string) []byte { return store.Key("offer", "own", key) }

// fill completes a spec with defaults and checks what the record check
// cannot (TTL and end).
func (s *Service) fill(spec Spec) (Spec, error) {
	if spec.Key == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		spec.Key = spec.Hardware.Profile + "-" + hex.EncodeToString(b)
	}
	if spec.TTL == 0 {
		spec.TTL = s.cfg.DefaultTTL
	}
	if spec.MinLease == 0 {
		spec.MinLease = min(s.cfg.DefaultMinLease, spec.MaxLease)
	}
	if spec.ReceiptInterval == 0 {
		spec.ReceiptInterval = s.cfg.DefaultReceiptInterval
	}
	if spec.PaymentGrace == 0 {
		spec.PaymentGrace = s.cfg.DefaultGrace
	}
	if len(spec.Formats) == 0 {
		spec.Formats = s.cfg.DefaultFormats
	}
	if spec.MaxApplianceSize == 0 {
		spec.MaxApplianceSize = s.cfg.DefaultMaxAppliance
	}
	if spec.TTL < time.Second || spec.TTL > s.lim.MaxOfferTTL {
		return spec, fmt.Errorf("offer %s: %w: ttl %v: want between 1s and %v", spec.Key, protocol.ErrInvalid, spec.TTL, s.lim.MaxOfferTTL)
	}
	if !spec.Until.IsZero() && !spec.Until.After(s.clk.Now()) {
		return spec, fmt.Errorf("offer %s: %w: until %s is in the past: want a later time", spec.Key, protocol.ErrInvalid, spec.Until.Format(time.RFC3339))
	}
	return spec, nil
}

// SetFreeSlots sets the hook that tells how many of an offer's slots are
// free now (the lease service's accounting); every copy published from
// then on states that count, capped by Spec.Slots, instead of the
// capacity. When free is nil, or has no count for an offer, copies state
// Spec.Slots.
func (s *Service) SetFreeSlots(free func(key string) (uint32, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = free
}

// slots is what a copy of spec states as its slots. The caller holds s.mu.
func (s *Service) slots(spec Spec) uint32 {
	if s.free == nil {
		return spec.Slots
	}
	if n, ok := s.free(spec.Key); ok {
		return min(n, spec.Slots)
	}
	return spec.Slots
}

// copyOf builds and signs a new copy of the offer issued now. The caller
// holds s.mu.
func (s *Service) copyOf(spec Spec, withdrawn bool, now time.Time) (*protocol.Offer, []byte, error) {
	exp := now.Add(spec.TTL)
	if !spec.Until.IsZero() && spec.Until.Before(exp) && spec.Until.After(now) {
		exp = spec.Until
	}
	o := &protocol.Offer{
		Version:          protocol.OfferVersion,
		Seller:           s.id,
		Key:              spec.Key,
		Region:           spec.Region,
		Hardware:         spec.Hardware,
		Slots:            s.slots(spec),
		Price:            spec.Price,
		MinLease:         protocol.MillisOf(spec.MinLease),
		MaxLease:         protocol.MillisOf(spec.MaxLease),
		Renewable:        spec.Renewable,
		Formats:          spec.Formats,
		MaxApplianceSize: spec.MaxApplianceSize,
		ReceiptInterval:  protocol.MillisOf(spec.ReceiptInterval),
		PaymentGrace:     protocol.MillisOf(spec.PaymentGrace),
		PerBuyerCap:      spec.PerBuyerCap,
		Paused:           spec.Paused,
		Addrs:            s.addrs(),
		IssuedAt:         protocol.TimeOf(now),
		ExpiresAt:        protocol.TimeOf(exp),
		Withdrawn:        withdrawn,
	}
	if err := o.ValidateFields(now, s.lim); err != nil {
		return nil, nil, err
	}
	raw, err := protocol.Sign(o, s.key)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) > s.lim.MaxOfferSize {
		return nil, nil, fmt.Errorf("offer %s: %d bytes signed, over the %d-byte limit: use fewer formats or addresses", spec.Key, len(raw), s.lim.MaxOfferSize)
	}
	return o, raw, nil
}

// nextPublish is when the copy issued at now is followed by the next: at
// half its life, unless republishing ends first.
func nextPublish(spec Spec, now time.Time) time.Time {
	next := now.Add(spec.TTL / 2)
	if !spec.Until.IsZero() && !next.Before(spec.Until) {
		return time.Time{}
	}
	return next
}

// Add signs and publishes the first copy of a new offer, storing it with
// its republish job.
func (s *Service) Add(ctx context.Context, spec Spec) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	spec, err := s.fill(spec)
	if err != nil {
		return Status{}, err
	}
	var exists bool
	if err := s.db.View(func(t *store.Txn) error {
		_, err := t.Get(ownKey(spec.Key))
		exists = err == nil
		return nil
	}); err != nil {
		return Status{}, err
	}
	if exists {
		return Status{}, fmt.Errorf("offer %s: %w: a key can be used once: choose another --key", spec.Key, ErrExists)
	}
	return s.publishCopy(ctx, spec, false)
}

// publishCopy signs a copy, stores it with its next job, then publishes it.
// The caller holds s.mu.
func (s *Service) publishCopy(ctx context.Context, spec Spec, withdrawn bool) (Status, error) {
	now := s.clk.Now()
	// Wire time is in milliseconds and books keep the copy with the later
	// issued-at: two copies within one millisecond would make the second
	// stale everywhere. Each copy is issued strictly after the last.
	if prev, err := s.load(spec.Key); err == nil {
		if po, err := protocol.DecodeOffer(prev.Raw, s.lim); err == nil && protocol.TimeOf(now) <= po.IssuedAt {
			now = po.IssuedAt.Std().Add(time.Millisecond)
		}
	}
	o, raw, err := s.copyOf(spec, withdrawn, now)
	if err != nil {
		return Status{}, err
	}
	st := stored{Spec: spec, Raw: raw, Withdrawn: withdrawn}
	var next time.Time
	if !withdrawn {
		next = nextPublish(spec, now)
	}
	if !next.IsZero() {
		st.Next = next.UnixNano()
	}
	val, err := json.Marshal(st)
	if err != nil {
		return Status{}, err
	}
	if err := s.db.Update(func(t *store.Txn) error {
		if err := t.Set(ownKey(spec.Key), val); err != nil {
			return err
		}
		if next.IsZero() {
			return t.Cancel(JobRepublish, spec.Key)
		}
		return t.Schedule(store.Job{Kind: JobRepublish, ID: spec.Key, Due: next})
	}); err != nil {
		return Status{}, fmt.Errorf("offer %s: store: %w", spec.Key, err)
	}
	if err := s.pub.PublishOffer(ctx, raw); err != nil {
		// Stored and scheduled: the next copy goes out on time anyway.
		s.log.Warn("publish offer", "key", spec.Key, "err", err)
	}
	s.log.Debug("offer published", "key", spec.Key, "withdrawn", withdrawn, "expires", o.ExpiresAt)
	return s.status(st), nil
}

func (s *Service) republish(ctx context.Context, j store.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load(j.ID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Withdrawn {
		return nil
	}
	if !st.Spec.Until.IsZero() && !s.clk.Now().Before(st.Spec.Until) {
		return nil
	}
	_, err = s.publishCopy(ctx, st.Spec, false)
	return err
}

// Republish publishes a fresh copy of every live own offer now, as a node
// does when it starts, so that peers learn them without waiting.
func (s *Service) Republish(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.loadAll()
	if err != nil {
		return err
	}
	now := s.clk.Now()
	for _, st := range all {
		if st.Withdrawn || (!st.Spec.Until.IsZero() && !now.Before(st.Spec.Until)) {
			continue
		}
		if _, err := s.publishCopy(ctx, st.Spec, false); err != nil {
			s.log.Warn("republish offer", "key", st.Spec.Key, "err", err)
		}
	}
	return nil
}

// Withdraw publishes a signed withdrawn copy of the offer and stops
// republishing it.
func (s *Service) Withdraw(ctx context.Context, key string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load(key)
	if err != nil {
		return Status{}, err
	}
	if st.Withdrawn {
		return s.status(st), fmt.Errorf("offer %s: %w", key, ErrWithdrawn)
	}
	spec := st.Spec
	spec.Until = time.Time{}
	return s.publishCopy(ctx, spec, true)
}

// Update changes the mutable terms of a live offer (slots, price, paused…)
// by publishing a new copy now.
func (s *Service) Update(ctx context.Context, key string, change func(*Spec)) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load(key)
	if err != nil {
		return Status{}, err
	}
	if st.Withdrawn {
		return s.status(st), fmt.Errorf("offer %s: %w", key, ErrWithdrawn)
	}
	if !st.Spec.Until.IsZero() && !s.clk.Now().Before(st.Spec.Until) {
		return s.status(st), fmt.Errorf("offer %s: %w", key, ErrEnded)
	}
	spec := st.Spec
	change(&spec)
	spec.Key = key
	return s.publishCopy(ctx, spec, false)
}

// Get returns one own offer.
func (s *Service) Get(key string) (Status, error) {
	st, err := s.load(key)
	if err != nil {
		return Status{}, err
	}
	return s.status(st), nil
}

// List returns the node's own offers by key, withdrawn ones included.
func (s *Service) List() ([]Status, error) {
	all, err := s.loadAll()
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(all))
	for _, st := range all {
		out = append(out, s.status(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Key < out[j].Spec.Key })
	return out, nil
}

// Live returns the raw newest copies of the live own offers, for a peer
// that asks to sync.
func (s *Service) Live() ([][]byte, error) {
	all, err := s.loadAll()
	if err != nil {
		return nil, err
	}
	now := s.clk.Now()
	var out [][]byte
	for _, st := range all {
		o, err := protocol.DecodeOffer(st.Raw, s.lim)
		if err != nil || o.Expired(now) {
			continue
		}
		out = append(out, st.Raw)
	}
	return out, nil
}

func (s *Service) load(key string) (stored, error) {
	var st stored
	err := s.db.View(func(t *store.Txn) error {
		v, err := t.Get(ownKey(key))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("offer %s: %w: 'spotmesh offer ls' lists the keys", key, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(v, &st)
	})
	return st, err
}

func (s *Service) loadAll() ([]stored, error) {
	var all []stored
	err := s.db.View(func(t *store.Txn) error {
		return t.Iterate(store.Key("offer", "own", ""), func(_, v []byte) error {
			var st stored
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			all = append(all, st)
			return nil
		})
	})
	return all, err
}

func (s *Service) status(st stored) Status {
	out := Status{Spec: st.Spec, Withdrawn: st.Withdrawn}
	if st.Next != 0 {
		out.NextPublish = time.Unix(0, st.Next).UTC()
	}
	if o, err := protocol.DecodeOffer(st.Raw, s.lim); err == nil {
		out.Current = o
		out.CID = protocol.CIDOf(st.Raw)
	}
	return out
}
