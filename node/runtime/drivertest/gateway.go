package drivertest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/gateway"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	mh "github.com/multiformats/go-multihash"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spotmesh/spotmesh/node/runtime"
)

// GatewayChunkSize is the leaf size of the Gateway's imports: smaller than
// the node's (1 MiB), so that the echo bundle is a DAG of a few dozen
// blocks under an inner node, not one block.
const GatewayChunkSize = 256 << 10

// Gateway holds appliances as UnixFS DAGs in memory and serves them over
// HTTP at /ipfs/<cid>, with boxo's gateway (raw, CAR and file responses),
// as the node's appliance gateway does. It stops when the test ends.
type Gateway struct {
	// URL is the gateway's base URL (http://127.0.0.1:port).
	URL string
	bs  blockstore.Blockstore
}

// NewGateway starts a gateway on loopback.
func NewGateway(t testing.TB) *Gateway {
	t.Helper()
	bs := blockstore.NewBlockstore(dssync.MutexWrap(datastore.NewMapDatastore()))
	bsvc := blockservice.New(bs, nil)
	reg := prometheus.NewRegistry()
	backend, err := gateway.NewBlocksBackend(bsvc, gateway.WithPrometheusRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	h := gateway.NewHandler(gateway.Config{DeserializedResponses: true, NoDNSLink: true, DisableHTMLErrors: true, MetricsRegistry: reg}, backend)
	mux := http.NewServeMux()
	mux.Handle("/ipfs/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &Gateway{URL: srv.URL, bs: bs}
}

// Add imports the file at path (CIDv1, raw leaves, balanced layout, the
// node's importer) and returns it as the appliance of a Spec: CID, Size,
// Format "bundle", Path and GatewayURL all set.
func (g *Gateway) Add(t testing.TB, path string) runtime.Appliance {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	dag := merkledag.NewDAGService(blockservice.New(g.bs, nil))
	params := helpers.DagBuilderParams{
		Maxlinks:   helpers.DefaultLinksPerBlock,
		RawLeaves:  true,
		CidBuilder: cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256},
		Dagserv:    dag,
	}
	db, err := params.New(chunker.NewSizeSplitter(f, GatewayChunkSize))
	if err != nil {
		t.Fatal(err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := dag.Add(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	return runtime.Appliance{
		CID:        root.Cid(),
		Size:       uint64(st.Size()),
		Format:     "bundle",
		Path:       path,
		GatewayURL: g.URL,
	}
}

// AddBytes writes b to a file of t and adds it.
func (g *Gateway) AddBytes(t testing.TB, name string, b []byte) runtime.Appliance {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return g.Add(t, p)
}
