package procnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/node"
)

// Files and directories of a testnet's directory.
const (
	ManifestFile = "testnet.json"
	LockFile     = "testnet.lock"
	BinDir       = "bin"
	BinaryName   = "spotmesh"
	// LogFile, in each node's home, takes the daemon's stdout and stderr.
	LogFile = "daemon.log"
)

// ManifestVersion is the version of testnet.json this package writes and
// reads. A testnet on loopback is written as version 1, which older
// spotmesh binaries read too; one of network namespaces (Network set) as
// version 2, so that a binary that knows nothing of its namespaces refuses
// it rather than leave them behind.
const ManifestVersion = 2

// manifestVersionLoopback is the version of a testnet without Network.
const manifestVersionLoopback = 1

// Manifest is testnet.json: what Up started, for every later operation.
type Manifest struct {
	Version int `json:"version"`
	// Dir is the testnet's directory, absolute.
	Dir string `json:"dir"`
	// Binary is the copied binary every node runs, absolute.
	Binary  string    `json:"binary"`
	Created time.Time `json:"created"`
	Nodes   []Node    `json:"nodes"`
	// Offers are the offers the sellers published at Up.
	Offers []Offer `json:"offers"`
	// Network is the testnet's network of namespaces; nil when its nodes
	// run on loopback.
	Network *Network `json:"network,omitempty"`
}

// Node is one node of a testnet, as last started.
type Node struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Home is the node's home directory, absolute.
	Home string `json:"home"`
	// PID is the daemon's process ID, and StartTime its start time in
	// clock ticks after boot (/proc/<pid>/stat field 22): together they
	// name one process across PID reuse.
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	// APIAddr is the daemon's REST API, host:port on loopback (or on IP,
	// in a network namespace).
	APIAddr string  `json:"api_addr"`
	PeerID  peer.ID `json:"peer_id,omitempty"`
	// Addrs are its p2p multiaddrs, each ending in /p2p/<peer id>.
	Addrs []string `json:"addrs"`
	// Started is when this process was started.
	Started time.Time `json:"started"`
	// Netns is the network namespace the daemon runs in, Veth the host's
	// end of its link to the testnet's bridge, and IP its address there;
	// all empty on loopback.
	Netns string `json:"netns,omitempty"`
	Veth  string `json:"veth,omitempty"`
	IP    string `json:"ip,omitempty"`
}

// Offer is one offer a seller published at Up.
type Offer struct {
	Seller  string `json:"seller"`
	Key     string `json:"key"`
	OfferID string `json:"offer_id"`
	Region  string `json:"region"`
	Profile string `json:"profile"`
	Price   string `json:"price"`
}

// readManifest reads <dir>/testnet.json.
func readManifest(dir string) (Manifest, error) {
	var m Manifest
	path := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%s: %w (no %s): boot one with 'spotmesh testnet up --dir %s'", dir, ErrNoTestnet, ManifestFile, dir)
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: damaged: %w", path, err)
	}
	if m.Version < manifestVersionLoopback || m.Version > ManifestVersion {
		return m, fmt.Errorf("%s: version %d: this spotmesh knows versions %d to %d", path, m.Version, manifestVersionLoopback, ManifestVersion)
	}
	return m, nil
}

// writeManifest writes m to <m.Dir>/testnet.json through a temporary
// file and a rename, so a reader never sees half of it.
func writeManifest(m Manifest) error {
	m.Version = manifestVersionLoopback
	if m.Network != nil {
		m.Version = ManifestVersion
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return node.WriteFileAtomic(filepath.Join(m.Dir, ManifestFile), append(b, '\n'), 0o644)
}

// node returns the index of the node named name.
func (m *Manifest) node(name string) (int, error) {
	for i, n := range m.Nodes {
		if n.Name == name {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%q: %w in the testnet at %s: its nodes are %s", name, ErrUnknownNode, m.Dir, nameList(m.Nodes))
}

// nameList shortens runs of numbered names: boot, seller-1..seller-8, buyer-1..buyer-2.
func nameList(nodes []Node) string {
	var out []string
	for i := 0; i < len(nodes); {
		j := i
		for j+1 < len(nodes) && nodes[j+1].Role == nodes[i].Role && nodes[i].Role != RoleBoot {
			j++
		}
		if j > i {
			out = append(out, nodes[i].Name+".."+nodes[j].Name)
		} else {
			out = append(out, nodes[i].Name)
		}
		i = j + 1
	}
	s := ""
	for i, x := range out {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}
