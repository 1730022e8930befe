package protocol

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Record is a signed record of the market. Only this package's types
// implement it: each is a DAG-CBOR map whose "sig" field holds the author's
// signature over the record type's domain string followed by the record's
// encoding without "sig".
type Record interface {
	// Domain is the signing domain of the record type, such as
	// "spotmesh/offer/v1". A signature for one type never verifies as
	// another.
	Domain() string
	// Author is the peer whose key signs the record.
	Author() peer.ID
	signature() []byte
	setSignature([]byte)
}

// SigningBytes is the payload the author signs: the domain, a zero byte,
// and the record encoded without its signature.
func SigningBytes(r Record) ([]byte, error) {
	sig := r.signature()
	r.setSignature(nil)
	enc, err := Marshal(r)
	r.setSignature(sig)
	if err != nil {
		return nil, err
	}
	d := r.Domain()
	out := make([]byte, 0, len(d)+1+len(enc))
	out = append(append(append(out, d...), 0), enc...)
	return out, nil
}

// Sign signs r with key, which must belong to r's author, and returns the
// record's encoding (signature included) and thus its CID's preimage.
func Sign(r Record, key crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if id != r.Author() {
		return nil, fmt.Errorf("sign: key of %s cannot sign for author %s", id, r.Author())
	}
	payload, err := SigningBytes(r)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sig, err := key.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	r.setSignature(sig)
	return Marshal(r)
}

// VerifySignature checks r's signature against the key inside its author's
// peer ID. It returns ErrBadSignature (wrapped) when it does not verify.
func VerifySignature(r Record) error {
	pub, err := r.Author().ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("%w: author %q has no inline public key: %v", ErrMalformed, r.Author(), err)
	}
	if !SignedBy(r, pub) {
		return fmt.Errorf("%w: %s does not verify for author %s", ErrBadSignature, r.Domain(), r.Author())
	}
	return nil
}

// SignedBy reports whether r's signature verifies under pub. A validator
// uses it to tell a forgery by the forwarding peer (ErrAuthorMismatch) from
// mere corruption.
func SignedBy(r Record, pub crypto.PubKey) bool {
	sig := r.signature()
	if len(sig) == 0 {
		return false
	}
	payload, err := SigningBytes(r)
	if err != nil {
		return false
	}
	ok, err := pub.Verify(payload, sig)
	return err == nil && ok
}
