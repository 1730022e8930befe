package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	mh "github.com/multiformats/go-multihash"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/node/appliance"
)

// testContent is the file the appliance cases import: 2.5 MiB and a few
// bytes of a fixed pseudo-random stream, so three leaves under a dag-pb
// root, and always the same CID.
var testContent = func() []byte {
	b := make([]byte, 5<<19+7)
	r := rand.NewChaCha8([32]byte{'s', 'p', 'o', 't'})
	_, _ = r.Read(b)
	return b
}()

// testApplianceCID is the CID of testContent, imported with the default
// chunk size; a case checks it.
const testApplianceCID = "bafybeiebfcbqf7vj2r2ynzhxchgauzcwnkluaw3mudoivox35akwtzowcm"

// missingCID is a well-formed appliance CID that no test imports.
var missingCID = func() string {
	h, _ := mh.Sum([]byte("nobody has this"), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.DagProtobuf, h).String()
}()

var ndjsonOnce sync.Once

// registerNDJSON teaches kin-openapi to read an NDJSON body as the array
// of its lines, which is how docs/openapi.yaml describes it.
func registerNDJSON() {
	ndjsonOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/x-ndjson",
			func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
				var lines []any
				sc := bufio.NewScanner(body)
				for sc.Scan() {
					var v any
					if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
						return nil, fmt.Errorf("line %d: %w", len(lines)+1, err)
					}
					lines = append(lines, v)
				}
				return lines, sc.Err()
			})
	})
}

// withAppliances gives the fake a real appliance service with a short
// idle timeout.
func withAppliances(t *testing.T, f *apitest.Fake) {
	mn := apitest.NewMocknet(t)
	f.Appl, _ = apitest.NewAppliances(t, mn, func(c *appliance.Config) { c.IdleTimeout = 300 * time.Millisecond })
}

// withImported gives the fake a service holding testContent, pinned by
// its import, named web.qcow2.
func withImported(t *testing.T, f *apitest.Fake) {
	withAppliances(t, f)
	info, err := f.Appl.Import(context.Background(), bytes.NewReader(testContent), appliance.Meta{Name: "web.qcow2", Format: "qcow2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.CID.String() != testApplianceCID {
		t.Fatalf("testContent imports as %s, want testApplianceCID %s: update the constant", info.CID, testApplianceCID)
	}
}

func appliancesOf(t *testing.T, f *apitest.Fake) []appliance.Info {
	t.Helper()
	list, err := f.Appl.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// ndjsonLines decodes a fetch's answer.
func ndjsonLines(t *testing.T, b []byte) []api.FetchEvent {
	t.Helper()
	var evs []api.FetchEvent
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var ev api.FetchEvent
		mustJSON(t, l, &ev)
		evs = append(evs, ev)
	}
	return evs
}

func applianceCases(t *testing.T) []apiCase {
	const oct = "application/octet-stream"
	content := string(testContent)
	base := "/v1/appliances/" + testApplianceCID
	info := func(check func(t *testing.T, a api.Appliance)) func(t *testing.T, b []byte, f *apitest.Fake) {
		return func(t *testing.T, b []byte, f *apitest.Fake) {
			var a api.Appliance
			mustJSON(t, b, &a)
			check(t, a)
		}
	}
	return []apiCase{
		{name: "import", method: "POST", target: "/v1/appliances?name=web.qcow2", body: content, ctype: oct, setupT: withAppliances,
			wantStatus: 201, check: info(func(t *testing.T, a api.Appliance) {
				if a.CID != testApplianceCID || a.Name != "web.qcow2" || a.Format != "qcow2" || a.Size != uint64(len(testContent)) ||
					!a.Pinned || len(a.Pins) != 1 || a.Pins[0] != "add" || a.Added.IsZero() {
					t.Errorf("imported %+v", a)
				}
			})},
		{name: "import, format given, no name", method: "POST", target: "/v1/appliances?format=raw", body: "tiny", ctype: oct, setupT: withAppliances,
			wantStatus: 201, check: info(func(t *testing.T, a api.Appliance) {
				if a.Name != "" || a.Format != "raw" || a.Size != 4 || !strings.HasPrefix(a.CID, "bafk") {
					t.Errorf("imported %+v", a)
				}
			})},
		{name: "import, no content type", method: "POST", target: "/v1/appliances?name=a.iso", body: "x", ctype: "-", setupT: withAppliances,
			wantStatus: 201, reqInvalid: true}, // the file asks for the type; the server takes raw bytes without one
		{name: "import, JSON body", method: "POST", target: "/v1/appliances?name=a", body: `{"file":"x"}`, setupT: withAppliances,
			wantStatus: 415, wantCode: api.CodeUnsupportedMedia, reqInvalid: true, check: wantMessage("application/octet-stream")},
		{name: "import, bad format", method: "POST", target: "/v1/appliances?format=QCOW2", body: "x", ctype: oct, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true, check: wantMessage(`appliance format "QCOW2"`)},
		{name: "import, name with a slash", method: "POST", target: "/v1/appliances?name=a%2Fb", body: "x", ctype: oct, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("without /")},
		{name: "import, unknown parameter", method: "POST", target: "/v1/appliances?nmae=a", body: "x", ctype: oct, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("nmae: unknown parameter: this route takes name, format")},
		{name: "import, over the limit", method: "POST", target: "/v1/appliances?name=big.img", body: content, ctype: oct, setupT: withAppliances,
			config: func(c *api.Config) { c.MaxApplianceBytes = 1 << 20 }, wantStatus: 413, wantCode: api.CodeTooLarge,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				wantMessage("limit of 1MiB (1048576 bytes)")(t, b, f)
				if l := appliancesOf(t, f); len(l) != 0 {
					t.Errorf("a refused import left %v", l)
				}
			}},
		{name: "import, no appliance store", method: "POST", target: "/v1/appliances?name=a", body: "x", ctype: oct,
			wantStatus: 503, wantCode: api.CodeUnavailable},

		{name: "list appliances, none", method: "GET", target: "/v1/appliances", setupT: withAppliances, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				if strings.TrimSpace(string(b)) != `{"appliances":[]}` {
					t.Errorf("list = %s", b)
				}
			}},
		{name: "list appliances", method: "GET", target: "/v1/appliances", setupT: withImported, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var r api.AppliancesResponse
				mustJSON(t, b, &r)
				if len(r.Appliances) != 1 || r.Appliances[0].CID != testApplianceCID || r.Appliances[0].Name != "web.qcow2" {
					t.Errorf("list = %s", b)
				}
			}},
		{name: "get appliance", method: "GET", target: base, setupT: withImported, wantStatus: 200,
			check: info(func(t *testing.T, a api.Appliance) {
				if a.CID != testApplianceCID || a.Size != uint64(len(testContent)) || !a.Pinned {
					t.Errorf("get %+v", a)
				}
			})},
		{name: "get appliance, unknown", method: "GET", target: "/v1/appliances/" + missingCID, setupT: withImported,
			wantStatus: 404, wantCode: api.CodeNotFound, check: wantMessage("not on this node: fetch it with POST /v1/appliances/" + missingCID + "/fetch")},
		{name: "get appliance, not a CID", method: "GET", target: "/v1/appliances/web.qcow2", setupT: withImported,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage(`"web.qcow2" is not a CID: want a CID like bafy`)},
		{name: "get appliance, a dag-cbor CID", method: "GET", target: "/v1/appliances/bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", setupT: withImported,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("codec dag-cbor")},

		{name: "fetch, already here", method: "POST", target: base + "/fetch", body: `{}`, setupT: withImported, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				evs := ndjsonLines(t, b)
				last := evs[len(evs)-1]
				if last.Info == nil || last.Error != nil || last.Info.CID != testApplianceCID || last.Done != uint64(len(testContent)) ||
					len(last.Info.Pins) != 2 { // add, and now get
					t.Errorf("fetch answered %s", b)
				}
			}},
		{name: "fetch, no body", method: "POST", target: base + "/fetch", setupT: withImported, wantStatus: 200},
		{name: "fetch, every field", method: "POST", target: base + "/fetch", setupT: withImported, wantStatus: 200,
			body: `{"peers":["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"],"max_size":21474836480,"transport":"bitswap","name":"n.raw","format":"raw"}`},
		{name: "fetch, stalled", method: "POST", target: "/v1/appliances/" + missingCID + "/fetch", body: `{"transport":"bitswap"}`, setupT: withAppliances,
			wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
				evs := ndjsonLines(t, b)
				last := evs[len(evs)-1]
				if last.Error == nil || last.Error.Code != api.CodeStalled || last.Error.Status != 504 || !strings.Contains(last.Error.Message, "resumes") {
					t.Errorf("fetch answered %s", b)
				}
			}},
		{name: "fetch, bad peer", method: "POST", target: base + "/fetch", body: `{"peers":["127.0.0.1:4001"]}`, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage(`field peers[0] "127.0.0.1:4001"`)},
		{name: "fetch, peer without id", method: "POST", target: base + "/fetch", body: `{"peers":["/ip4/127.0.0.1/tcp/4001"]}`, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("ending in /p2p/<peer id>")},
		{name: "fetch, bad transport", method: "POST", target: base + "/fetch", body: `{"transport":"carrier pigeon"}`, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true, check: wantMessage("want auto, bitswap or stream")},
		{name: "fetch, unknown field", method: "POST", target: base + "/fetch", body: `{"peer":"x"}`, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true, check: wantMessage(`unknown field "peer"`)},
		{name: "fetch, bad CID", method: "POST", target: "/v1/appliances/Qmnope/fetch", body: `{}`, setupT: withAppliances,
			wantStatus: 400, wantCode: api.CodeBadRequest},

		{name: "content", method: "GET", target: base + "/content", setupT: withImported, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				if !bytes.Equal(b, testContent) {
					t.Errorf("content: %d bytes, not the file's %d", len(b), len(testContent))
				}
			}},
		{name: "content, a range across leaves", method: "GET", target: base + "/content", header: map[string]string{"Range": "bytes=1048570-1048589"},
			setupT: withImported, wantStatus: 206, check: func(t *testing.T, b []byte, f *apitest.Fake) {
				if !bytes.Equal(b, testContent[1048570:1048590]) {
					t.Errorf("range: %x", b)
				}
			}},
		{name: "content, the tail", method: "GET", target: base + "/content", header: map[string]string{"Range": "bytes=-5"},
			setupT: withImported, wantStatus: 206, check: func(t *testing.T, b []byte, f *apitest.Fake) {
				if !bytes.Equal(b, testContent[len(testContent)-5:]) {
					t.Errorf("tail: %x", b)
				}
			}},
		{name: "content, past the end", method: "GET", target: base + "/content", header: map[string]string{"Range": "bytes=99999999-"},
			setupT: withImported, wantStatus: 416},
		{name: "content, not here", method: "GET", target: "/v1/appliances/" + missingCID + "/content", setupT: withImported,
			wantStatus: 404, wantCode: api.CodeNotFound, check: wantMessage("spotmesh appliance get " + missingCID)},

		{name: "pin", method: "POST", target: base + "/pin", setupT: withImported, wantStatus: 200,
			check: info(func(t *testing.T, a api.Appliance) {
				if strings.Join(a.Pins, ",") != "add,get" {
					t.Errorf("pins %v", a.Pins)
				}
			})},
		{name: "pin for a lease", method: "POST", target: base + "/pin?reason=lease:abc", setupT: withImported, wantStatus: 200,
			check: info(func(t *testing.T, a api.Appliance) {
				if strings.Join(a.Pins, ",") != "add,lease:abc" {
					t.Errorf("pins %v", a.Pins)
				}
			})},
		{name: "pin, empty reason", method: "POST", target: base + "/pin?reason=", setupT: withImported,
			wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true, check: wantMessage("pin reason")},
		{name: "pin, not here", method: "POST", target: "/v1/appliances/" + missingCID + "/pin", setupT: withImported,
			wantStatus: 404, wantCode: api.CodeNotFound, check: wantMessage("fetch it first")},

		{name: "remove", method: "DELETE", target: base, setupT: withImported, wantStatus: 200,
			check: info(func(t *testing.T, a api.Appliance) {
				if a.Pinned || len(a.Pins) != 0 {
					t.Errorf("removed %+v", a)
				}
			})},
		{name: "remove keeps a lease's pin", method: "DELETE", target: base, wantStatus: 200,
			setupT: func(t *testing.T, f *apitest.Fake) {
				withImported(t, f)
				if _, err := f.Appl.Pin(context.Background(), mustCID(t, testApplianceCID), "lease:abc"); err != nil {
					t.Fatal(err)
				}
			}, check: info(func(t *testing.T, a api.Appliance) {
				if !a.Pinned || strings.Join(a.Pins, ",") != "lease:abc" {
					t.Errorf("removed %+v", a)
				}
			})},
		{name: "unpin a reason", method: "DELETE", target: base + "?reason=add", setupT: withImported, wantStatus: 200},
		{name: "unpin a reason not pinned", method: "DELETE", target: base + "?reason=lease:x", setupT: withImported,
			wantStatus: 409, wantCode: api.CodeNotPinned, check: wantMessage(`no pin of reason "lease:x"`)},
		{name: "remove unknown", method: "DELETE", target: "/v1/appliances/" + missingCID, setupT: withImported,
			wantStatus: 404, wantCode: api.CodeNotFound},

		{name: "gc, nothing to free", method: "POST", target: "/v1/appliances/gc", setupT: withImported, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				if strings.TrimSpace(string(b)) != `{"freed":0}` {
					t.Errorf("gc = %s", b)
				}
			}},
		{name: "gc after remove", method: "POST", target: "/v1/appliances/gc", wantStatus: 200,
			setupT: func(t *testing.T, f *apitest.Fake) {
				withImported(t, f)
				if _, err := f.Appl.Remove(context.Background(), mustCID(t, testApplianceCID)); err != nil {
					t.Fatal(err)
				}
			}, check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var r api.GCResponse
				mustJSON(t, b, &r)
				if r.Freed < uint64(len(testContent)) || len(appliancesOf(t, f)) != 0 {
					t.Errorf("gc = %s, left %v", b, appliancesOf(t, f))
				}
			}},
		{name: "gc, a parameter", method: "POST", target: "/v1/appliances/gc?all=1", setupT: withImported,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("this route takes none")},
	}
}

func mustCID(t *testing.T, s string) cid.Cid {
	t.Helper()
	c, err := cid.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// servedPair is two nodes' APIs over fakes with real appliance services
// on one mocknet: A fetches from B.
type servedPair struct {
	fa, fb *apitest.Fake
	ca, cb *api.Client
	bAddr  string // B's p2p address, /p2p/ included
}

func newServedPair(t *testing.T, tweak func(*appliance.Config)) servedPair {
	t.Helper()
	mn := apitest.NewMocknet(t)
	var p servedPair
	p.fa, p.fb = apitest.NewFake(t), apitest.NewFake(t)
	p.fa.Appl, _ = apitest.NewAppliances(t, mn, tweak)
	var hb host.Host
	p.fb.Appl, hb = apitest.NewAppliances(t, mn, tweak)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	_, p.ca = startServer(t, p.fa)
	_, p.cb = startServer(t, p.fb)
	p.bAddr = hb.Addrs()[0].String() + "/p2p/" + hb.ID().String()
	return p
}

// randomBytes is n bytes of a pseudo-random stream from seed.
func randomBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{seed})
	_, _ = r.Read(b)
	return b
}

func TestApplianceClientRoundTrip(t *testing.T) {
	p := newServedPair(t, nil)
	ctx := context.Background()
	data := randomBytes(1, 3<<20+1000)

	var sent atomic.Uint64
	var calls atomic.Int64
	imp, err := p.cb.ImportAppliance(ctx, bytes.NewReader(data), api.ImportOptions{Name: "site.tar", Size: int64(len(data)),
		Progress: func(n uint64) { sent.Store(n); calls.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if imp.Name != "site.tar" || imp.Format != "bundle" || imp.Size != uint64(len(data)) || strings.Join(imp.Pins, ",") != "add" {
		t.Errorf("imported %+v", imp)
	}
	if sent.Load() != uint64(len(data)) || calls.Load() < 2 {
		t.Errorf("import progress: %d calls, last %d", calls.Load(), sent.Load())
	}
	if list, err := p.cb.Appliances(ctx); err != nil || len(list) != 1 || list[0].CID != imp.CID {
		t.Errorf("B lists %+v, %v", list, err)
	}

	// A fetches it from B, with progress.
	if _, err := p.ca.Appliance(ctx, imp.CID); !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("A has it before fetching: %v", err)
	}
	var mu sync.Mutex
	var seen [][2]uint64
	got, err := p.ca.FetchAppliance(ctx, imp.CID, api.FetchRequest{Peers: []string{p.bAddr}, Name: "site.tar"}, func(done, total uint64) {
		mu.Lock()
		seen = append(seen, [2]uint64{done, total})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.CID != imp.CID || got.Size != imp.Size || got.Name != "site.tar" || strings.Join(got.Pins, ",") != "get" {
		t.Errorf("fetched %+v", got)
	}
	mu.Lock()
	if len(seen) == 0 || seen[len(seen)-1] != [2]uint64{imp.Size, imp.Size} {
		t.Errorf("fetch progress %v", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i][0] < seen[i-1][0] {
			t.Errorf("fetch progress goes back: %v", seen)
		}
	}
	mu.Unlock()

	// A reads it back, whole and from an offset.
	for _, off := range []int{0, 1<<20 + 5, len(data) - 1} {
		rc, n, err := p.ca.ApplianceContent(ctx, imp.CID, uint64(off))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || n != int64(len(data)-off) || !bytes.Equal(b, data[off:]) {
			t.Errorf("content from %d: %d bytes (length %d), %v", off, len(b), n, err)
		}
	}

	// Pins, remove, GC.
	a, err := p.ca.PinAppliance(ctx, imp.CID, "lease:l1")
	if err != nil || strings.Join(a.Pins, ",") != "get,lease:l1" {
		t.Errorf("pin %+v, %v", a, err)
	}
	if a, err = p.ca.RemoveAppliance(ctx, imp.CID); err != nil || strings.Join(a.Pins, ",") != "lease:l1" || !a.Pinned {
		t.Errorf("remove %+v, %v", a, err)
	}
	if freed, err := p.ca.GCAppliances(ctx); err != nil || freed != 0 {
		t.Errorf("gc with a lease's pin freed %d, %v", freed, err)
	}
	if a, err = p.ca.UnpinAppliance(ctx, imp.CID, "lease:l1"); err != nil || a.Pinned {
		t.Errorf("unpin %+v, %v", a, err)
	}
	if _, err = p.ca.UnpinAppliance(ctx, imp.CID, "lease:l1"); !api.IsCode(err, api.CodeNotPinned) {
		t.Errorf("unpin twice: %v", err)
	}
	freed, err := p.ca.GCAppliances(ctx)
	if err != nil || freed < imp.Size {
		t.Errorf("gc freed %d, %v; want at least %d", freed, err, imp.Size)
	}
	if _, err := p.ca.Appliance(ctx, imp.CID); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("after gc: %v", err)
	}
	if _, _, err := p.ca.ApplianceContent(ctx, imp.CID, 0); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("content after gc: %v", err)
	}
	if _, err := p.ca.PinAppliance(ctx, imp.CID, ""); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("pin after gc: %v", err)
	}
}

func TestApplianceFetchErrors(t *testing.T) {
	p := newServedPair(t, func(c *appliance.Config) { c.IdleTimeout = 500 * time.Millisecond })
	ctx := context.Background()
	data := randomBytes(2, 3<<20)
	imp, err := p.cb.ImportAppliance(ctx, bytes.NewReader(data), api.ImportOptions{Name: "a.img", Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cid    string
		req    api.FetchRequest
		code   string
		status int
		says   string
	}{
		{"over the limit", imp.CID, api.FetchRequest{Peers: []string{p.bAddr}, MaxSize: 1 << 20}, api.CodeTooLarge, 413, "limit of 1048576"},
		{"nobody has it", missingCID, api.FetchRequest{Peers: []string{p.bAddr}, Transport: "bitswap"}, api.CodeStalled, 504, "transfer stalled"},
		{"bad peer", imp.CID, api.FetchRequest{Peers: []string{"nope"}}, api.CodeBadRequest, 400, `field peers[0] "nope"`},
		{"bad CID", "nope", api.FetchRequest{}, api.CodeBadRequest, 400, `"nope" is not a CID`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.ca.FetchAppliance(ctx, tc.cid, tc.req, nil)
			var e *api.Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Status != tc.status || !strings.Contains(e.Message, tc.says) {
				t.Errorf("fetch: %#v, want code %s, status %d, saying %q", err, tc.code, tc.status, tc.says)
			}
		})
	}
	if list, err := p.ca.Appliances(ctx); err != nil || len(list) != 0 {
		t.Errorf("failed fetches left %+v, %v", list, err)
	}
}

func TestApplianceImportLimit(t *testing.T) {
	f := apitest.NewFake(t)
	withAppliances(t, f)
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: apitest.Token, MaxApplianceBytes: 1 << 20}, f)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(s.Addr(), apitest.Token)
	t.Cleanup(func() {
		c.CloseIdleConnections()
		s.Close()
	})
	ctx := context.Background()
	data := randomBytes(3, 3<<20)
	for _, size := range []int64{int64(len(data)), -1} { // told, and found out while streaming
		_, err := c.ImportAppliance(ctx, bytes.NewReader(data), api.ImportOptions{Name: "big.img", Size: size})
		var e *api.Error
		if !errors.As(err, &e) || e.Status != 413 || e.Code != api.CodeTooLarge || !strings.Contains(e.Message, "limit of 1MiB") {
			t.Errorf("size %d: %v", size, err)
		}
	}
	// Just under the limit passes.
	if _, err := c.ImportAppliance(ctx, bytes.NewReader(data[:1<<20]), api.ImportOptions{Size: -1}); err != nil {
		t.Errorf("import at the limit: %v", err)
	}
	if list, _ := c.Appliances(ctx); len(list) != 1 {
		t.Errorf("appliances %+v", list)
	}
}

// countingAppliances sees how far an import has read.
type countingAppliances struct {
	api.Appliances
	read atomic.Uint64
}

func (c *countingAppliances) Import(ctx context.Context, r io.Reader, meta appliance.Meta, progress func(uint64)) (appliance.Info, error) {
	return c.Appliances.Import(ctx, r, meta, func(n uint64) { c.read.Store(n) })
}

// TestApplianceImportStreams: the node imports the body as it arrives,
// long before the client has sent all of it.
func TestApplianceImportStreams(t *testing.T) {
	f := apitest.NewFake(t)
	withAppliances(t, f)
	ca := &countingAppliances{Appliances: f.Appl}
	f.Appl = ca
	_, c := startServer(t, f)
	data := randomBytes(4, 6<<20)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := c.ImportAppliance(context.Background(), pr, api.ImportOptions{Name: "s.raw", Size: -1})
		done <- err
	}()
	if _, err := pw.Write(data[:4<<20]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ca.read.Load() < 3<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the node read %d bytes of the 4 MiB sent so far: it does not stream", ca.read.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := pw.Write(data[4<<20:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ca.read.Load() != uint64(len(data)) {
		t.Errorf("imported %d bytes of %d", ca.read.Load(), len(data))
	}
}
