package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
)

const testPeer = "12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"

// offerBody is a POST /v1/leases body for the fake's first book offer.
func offerBody(extra string) func(f *apitest.Fake) string {
	return func(f *apitest.Fake) string {
		c := f.Book(market.Query{})[0].CID
		return fmt.Sprintf(`{"offer_cid":%q,"appliance":%q,"for":"2h"%s}`, c, testApplianceCID, extra)
	}
}

// leased makes one lease in the fake and returns its ID.
func leased(f *apitest.Fake) string {
	in, _, err := f.Leases.Best(context.Background(), market.Query{}, lease.Params{Length: 3600e9})
	if err != nil {
		panic(err)
	}
	return in.ID.String()
}

func leaseCases(t *testing.T) []apiCase {
	var id string
	withLease := func(f *apitest.Fake) { id = leased(f) }
	lid := func(suffix string) string { return "/v1/leases/" + protocol.CIDOf([]byte("lease 1")).String() + suffix }
	refuse := func(keys ...string) func(*apitest.Fake) {
		return func(f *apitest.Fake) {
			for _, k := range keys {
				f.Leases.Refuse(k)
			}
		}
	}
	return []apiCase{
		{name: "lease an offer", method: "POST", target: "/v1/leases", bodyFn: offerBody(`,"slots":2,"ssh_key":"ssh-ed25519 AAAA"`), wantStatus: 201,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var l api.Lease
				mustJSON(t, b, &l)
				if l.ID == "" || l.State != "running" || l.Endpoint != apitest.FakeEndpoint || l.Slots != 2 || l.Role != "buyer" || l.Appliance != testApplianceCID || !l.Ends.Equal(f.Now.Add(2*3600e9)) {
					t.Errorf("lease = %s", b)
				}
			}},
		{name: "lease an offer, refused", method: "POST", target: "/v1/leases", bodyFn: offerBody(""), setup: refuse("a"), wantStatus: 409, wantCode: api.CodeRejected,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var e api.Error
				mustJSON(t, b, &e)
				if e.Reason != "no_capacity" || e.Words != protocol.ReasonNoCapacity.Words() {
					t.Errorf("refusal = %s", b)
				}
			}},
		{name: "lease an offer by its offer ID", method: "POST", target: "/v1/leases", wantStatus: 201,
			bodyFn: func(f *apitest.Fake) string {
				o := f.Book(market.Query{})[0].Offer
				return fmt.Sprintf(`{"offer_cid":%q,"appliance":%q,"for":"2h"}`, o.ID().String(), testApplianceCID)
			}},
		{name: "lease an offer ID not in the book", method: "POST", target: "/v1/leases", wantStatus: 404, wantCode: api.CodeNotFound,
			body: `{"offer_cid":"` + testPeer + `/nope","appliance":"` + testApplianceCID + `","for":"2h"}`},
		{name: "lease an offer not in the book", method: "POST", target: "/v1/leases", wantStatus: 404, wantCode: api.CodeNotFound,
			body: `{"offer_cid":"` + missingCID + `","appliance":"` + testApplianceCID + `","for":"2h"}`},
		{name: "lease, both offer and best", method: "POST", target: "/v1/leases", bodyFn: offerBody(`,"best":{}`), wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("exactly one")},
		{name: "lease, neither offer nor best", method: "POST", target: "/v1/leases", body: `{"appliance":"` + testApplianceCID + `","for":"2h"}`, wantStatus: 400, wantCode: api.CodeBadRequest},
		{name: "lease, bad length", method: "POST", target: "/v1/leases", bodyFn: offerBody(`,"for":"2 hours"`), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "lease, bad appliance", method: "POST", target: "/v1/leases", body: `{"best":{},"appliance":"nope","for":"2h"}`, wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("appliance")},
		{name: "lease, unknown field", method: "POST", target: "/v1/leases", body: `{"best":{},"appliance":"` + testApplianceCID + `","for":"2h","length":"1h"}`, wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "lease best, falls back", method: "POST", target: "/v1/leases", body: `{"best":{"vcpu":">=2"},"appliance":"` + testApplianceCID + `","for":"1h"}`,
			setup: refuse("a"), wantStatus: 201, check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var l api.Lease
				mustJSON(t, b, &l)
				if !strings.HasSuffix(l.OfferID, "/b") || len(l.Attempts) != 1 || l.Attempts[0].Reason != "no_capacity" || !strings.HasSuffix(l.Attempts[0].OfferID, "/a") {
					t.Errorf("lease = %s", b)
				}
				if f.LastQuery().VCPU.Min != 2 {
					t.Errorf("query = %+v", f.LastQuery())
				}
			}},
		{name: "lease best, none grants", method: "POST", target: "/v1/leases", body: `{"best":{},"appliance":"` + testApplianceCID + `","for":"1h"}`,
			setup: refuse("a", "b", "c"), wantStatus: 422, wantCode: api.CodeNoOffer, check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var e api.Error
				mustJSON(t, b, &e)
				if len(e.Attempts) != 3 || e.Attempts[2].Words == "" {
					t.Errorf("refusal = %s", b)
				}
			}},
		{name: "lease best, bad filter", method: "POST", target: "/v1/leases", body: `{"best":{"vcpu":"lots"},"appliance":"` + testApplianceCID + `","for":"1h"}`, wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("vcpu")},
		{name: "lease, no lease service", method: "POST", target: "/v1/leases", bodyFn: offerBody(""), setup: func(f *apitest.Fake) { f.NoLeases = true }, wantStatus: 503, wantCode: api.CodeUnavailable},
		{name: "list leases, none", method: "GET", target: "/v1/leases", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if strings.TrimSpace(string(b)) != `{"leases":[]}` {
				t.Errorf("leases = %s", b)
			}
		}},
		{name: "list leases", method: "GET", target: "/v1/leases?role=buyer", setup: withLease, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.LeasesResponse
			mustJSON(t, b, &r)
			if len(r.Leases) != 1 || r.Leases[0].ID != id {
				t.Errorf("leases = %s", b)
			}
		}},
		{name: "list leases, bad role", method: "GET", target: "/v1/leases?role=owner", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "get lease", method: "GET", target: lid(""), setup: withLease, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var l api.Lease
			mustJSON(t, b, &l)
			if l.ID != id || l.State != "running" {
				t.Errorf("lease = %s", b)
			}
		}},
		{name: "get lease, unknown", method: "GET", target: lid(""), wantStatus: 404, wantCode: api.CodeNotFound},
		{name: "get lease, bad id", method: "GET", target: "/v1/leases/xyz", wantStatus: 400, wantCode: api.CodeBadRequest},
		{name: "renew lease", method: "POST", target: lid("/renew"), body: `{"for":"1h"}`, setup: withLease, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var l api.Lease
			mustJSON(t, b, &l)
			if l.Extensions != 1 || !l.Ends.Equal(f.Now.Add(2*3600e9)) {
				t.Errorf("lease = %s", b)
			}
		}},
		{name: "renew lease, no length", method: "POST", target: lid("/renew"), body: `{}`, setup: withLease, wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "renew lease, ended", method: "POST", target: lid("/renew"), body: `{"for":"1h"}`, wantStatus: 409, wantCode: api.CodeConflict, setup: func(f *apitest.Fake) {
			withLease(f)
			f.Leases.End(context.Background(), protocol.CIDOf([]byte("lease 1")))
		}},
		{name: "end lease", method: "DELETE", target: lid(""), setup: withLease, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var l api.Lease
			mustJSON(t, b, &l)
			if l.State != "ended" || l.Cause != "ended_by_buyer" {
				t.Errorf("lease = %s", b)
			}
		}},
		{name: "end lease, unknown", method: "DELETE", target: lid(""), wantStatus: 404, wantCode: api.CodeNotFound},
		{name: "pause offer", method: "POST", target: "/v1/offers/mine/pause", setup: addedOffer, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if !f.Leases.Paused("mine") || !strings.Contains(string(b), `"paused":true`) {
				t.Errorf("pause = %s", b)
			}
		}},
		{name: "resume offer", method: "POST", target: "/v1/offers/mine/resume", setup: addedOffer, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if f.Leases.Paused("mine") || !strings.Contains(string(b), `"paused":false`) {
				t.Errorf("resume = %s", b)
			}
		}},
		{name: "pause unknown offer", method: "POST", target: "/v1/offers/nope/pause", wantStatus: 404, wantCode: api.CodeNotFound, check: wantMessage(`no offer with key "nope"`)},
		{name: "pause bad key", method: "POST", target: "/v1/offers/a%20b/pause", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "deny", method: "POST", target: "/v1/deny", body: `{"peer":"` + testPeer + `","note":"spam"}`, wantStatus: 201, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if d := f.Leases.ListDenied(); len(d) != 1 || d[0].Peer.String() != testPeer || d[0].Note != "spam" {
				t.Errorf("denied = %+v", d)
			}
		}},
		{name: "deny, bad peer", method: "POST", target: "/v1/deny", body: `{"peer":"nobody"}`, wantStatus: 400, wantCode: api.CodeBadRequest},
		{name: "deny, no peer", method: "POST", target: "/v1/deny", body: `{}`, wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "list denied", method: "GET", target: "/v1/deny", wantStatus: 200, setup: func(f *apitest.Fake) {
			_, p := apitest.NewKey(t)
			f.Leases.Deny(context.Background(), p, "")
		}, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.DeniedResponse
			mustJSON(t, b, &r)
			if len(r.Denied) != 1 || r.Denied[0].At.IsZero() {
				t.Errorf("denied = %s", b)
			}
		}},
		{name: "allow", method: "DELETE", target: "/v1/deny/" + testPeer, wantStatus: 200, setup: func(f *apitest.Fake) {
			f.Leases.Deny(context.Background(), mustPeer(testPeer), "")
		}, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if d := f.Leases.ListDenied(); len(d) != 0 {
				t.Errorf("denied = %+v", d)
			}
		}},
		{name: "allow, bad peer", method: "DELETE", target: "/v1/deny/nobody", wantStatus: 400, wantCode: api.CodeBadRequest},
		{name: "instances", method: "GET", target: "/v1/instances", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.InstancesResponse
			mustJSON(t, b, &r)
			if len(r.Instances) != 1 || r.Instances[0].Endpoint != apitest.FakeEndpoint || len(r.Instances[0].Enforced) != 1 || r.Instances[0].Usage.CPU.Std() != 3e9 {
				t.Errorf("instances = %s", b)
			}
		}},
		{name: "instances, no driver", method: "GET", target: "/v1/instances", setup: func(f *apitest.Fake) { f.Insts = nil }, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if strings.TrimSpace(string(b)) != `{"instances":[]}` {
				t.Errorf("instances = %s", b)
			}
		}},
	}
}

func mustPeer(s string) peer.ID {
	p, err := peer.Decode(s)
	if err != nil {
		panic(err)
	}
	return p
}
