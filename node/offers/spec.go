package offers

import (
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/protocol"
)

// Spec is what a seller states when it adds an offer: everything of the
// Offer record but the signature, times and addresses, which the node fills
// in on every republished copy, plus how long copies live and until when
// the node keeps republishing.
type Spec struct {
	// Key names the offer; empty means the node picks one from the profile.
	Key      string
	Region   string
	Hardware protocol.Hardware
	// Slots is the offer's capacity: how many slots the seller has in
	// all. Copies state the free count instead when Service.SetFreeSlots
	// has a hook that knows it.
	Slots            uint32
	Price            protocol.Price
	MinLease         time.Duration
	MaxLease         time.Duration
	Renewable        bool
	Formats          []string
	MaxApplianceSize uint64
	ReceiptInterval  time.Duration
	PaymentGrace     time.Duration
	PerBuyerCap      uint32
	// Paused offers take no new leases; running ones go on.
	Paused bool
	// TTL is the life of each signed copy (default 10m); the node
	// republishes at half of it.
	TTL time.Duration
	// Until ends republishing; zero means until withdrawn.
	Until time.Time
}

// Status is one of the seller's own offers as the node holds it.
type Status struct {
	Spec Spec
	// Current is the newest signed copy published, CID its name.
	Current *protocol.Offer
	CID     cid.Cid
	// Withdrawn: a signed withdrawal was published; no more copies follow.
	Withdrawn bool
	// NextPublish is when the next copy goes out (zero when none will).
	NextPublish time.Time
}
