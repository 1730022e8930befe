package procnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/runtime/process"
)

// Start starts the named node's daemon again with the same home (same
// key, config and database) and waits until its API answers; a daemon
// that does not answer in time is stopped again. It refuses a node that
// runs. A restarted boot node then dials every live node, since they do
// not redial it; other nodes find the rest through it.
func (n *Net) Start(ctx context.Context, name string) (Node, error) {
	unlock, err := n.lock()
	if err != nil {
		return Node{}, err
	}
	defer unlock()
	m := n.Manifest()
	i, err := m.node(name)
	if err != nil {
		return Node{}, err
	}
	nd := m.Nodes[i]
	if st, _ := probe(m.Binary, nd); st == procOurs {
		return nd, fmt.Errorf("%s: %w (pid %d): kill it first with 'spotmesh testnet kill --dir %s %s'", name, ErrAlreadyRunning, nd.PID, m.Dir, name)
	}
	if m.Network != nil {
		// After a down, or a crash: the namespace and links again.
		if err := n.setupNetwork(ctx, false); err != nil {
			return Node{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := n.spawn(i); err != nil {
		return Node{}, err
	}
	if err := n.waitReady(ctx, i); err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		one := n.Manifest()
		one.Nodes = one.Nodes[i : i+1]
		n.stop(sctx, one, 5*time.Second)
		return Node{}, fmt.Errorf("%w\n(%s is stopped again)", err, name)
	}
	if nd.Role == RoleBoot {
		n.redial(ctx, i)
	}
	return n.Node(name)
}

// redial has node i dial every other live node, best effort.
func (n *Net) redial(ctx context.Context, i int) {
	clients, err := n.clients()
	if err != nil {
		return
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	m := n.Manifest()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = n.each(ctx, 0, func(ctx context.Context, j int) error {
		if j == i || len(m.Nodes[j].Addrs) == 0 {
			return nil
		}
		if st, _ := probe(m.Binary, m.Nodes[j]); st != procOurs {
			return nil
		}
		if _, err := clients[i].Connect(ctx, m.Nodes[j].Addrs[0]); err != nil {
			n.log.Warn("redial", "from", m.Nodes[i].Name, "to", m.Nodes[j].Name, "err", err)
		}
		return nil
	})
}

// Kill sends SIGKILL to the named node's daemon, a crash for tests of
// faults, and waits until it is gone. It refuses a PID that no longer
// runs the node's daemon.
func (n *Net) Kill(ctx context.Context, name string) (Node, error) {
	unlock, err := n.lock()
	if err != nil {
		return Node{}, err
	}
	defer unlock()
	m := n.Manifest()
	i, err := m.node(name)
	if err != nil {
		return Node{}, err
	}
	nd := m.Nodes[i]
	check := func() error {
		why, err := ours(m.Binary, nd)
		switch {
		case errors.Is(err, ErrNotRunning):
			return fmt.Errorf("%s: %w (%s)", name, err, why)
		case err != nil:
			return fmt.Errorf("%s: %w: %s; left alone", name, err, why)
		}
		return nil
	}
	if err := signalIf(nd.PID, syscall.SIGKILL, check); err != nil {
		return nd, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := waitGone(wctx, nd); err != nil {
		return nd, fmt.Errorf("%s: pid %d survives SIGKILL: %w", name, nd.PID, err)
	}
	return nd, nil
}

// ours is the check before signalling nd's daemon: nil when its PID still
// runs it, else ErrNotRunning or ErrNotOurs and why, in words.
func ours(bin string, nd Node) (why string, err error) {
	switch st, why := probe(bin, nd); st {
	case procGone:
		return why, ErrNotRunning
	case procOther:
		return why, ErrNotOurs
	}
	return "", nil
}

// waitGone waits until nd's daemon has ended: no process at its PID,
// a zombie, or another process.
func waitGone(ctx context.Context, nd Node) error {
	return poll(ctx, 20*time.Millisecond, func() (bool, error) {
		reap(nd.PID)
		st, err := readStat(nd.PID)
		return err != nil || st.ended() || st.start != nd.StartTime, nil
	})
}

// Outcomes of stopping one node (StopResult.Outcome).
const (
	Stopped    = "stopped"     // ended after SIGTERM
	Killed     = "killed"      // ended after SIGKILL, when SIGTERM was not enough
	NotRunning = "not running" // had ended already
	LeftAlone  = "left alone"  // its PID runs another process now
	Failed     = "failed"      // still running, or could not be signalled
)

// StopResult is what Down did to one node.
type StopResult struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
	// Took is how long the node took to stop, for Stopped and Killed.
	Took api.Duration `json:"took,omitzero"`
	// Instances is how many instances the node's process driver had left
	// running (they outlive their node by design) that Down killed.
	Instances int `json:"instances,omitempty"`
}

// Down stops every node's daemon that runs: SIGTERM, up to grace for
// them to end, then SIGKILL; then the instances that the stopped sellers'
// process drivers left running (see stopInstances). It leaves the directory (homes, logs,
// manifest) as it is, and fails when a process would not stop. A testnet
// of network namespaces then loses its namespaces, links and bridges
// (Start makes them again).
func (n *Net) Down(ctx context.Context, grace time.Duration) ([]StopResult, error) {
	unlock, err := n.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	m := n.Manifest()
	res := n.stop(ctx, m, grace)
	var bad []string
	for i, r := range res {
		switch r.Outcome {
		case Failed:
			bad = append(bad, r.Name)
		case Stopped, Killed, NotRunning:
			res[i].Instances = stopInstances(m.Nodes[i].Home)
		}
	}
	if len(bad) > 0 {
		return res, fmt.Errorf("could not stop %s", strings.Join(bad, ", "))
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := n.dropNetwork(nctx); err != nil {
		return res, fmt.Errorf("remove the testnet's network: %w", err)
	}
	return res, nil
}

// stop ends the running nodes of m: SIGTERM, grace, SIGKILL.
func (n *Net) stop(ctx context.Context, m Manifest, grace time.Duration) []StopResult {
	res := make([]StopResult, len(m.Nodes))
	var term []int
	t0 := time.Now()
	for i, nd := range m.Nodes {
		res[i] = StopResult{Name: nd.Name, PID: nd.PID}
		var why string
		err := signalIf(nd.PID, syscall.SIGTERM, func() (err error) {
			why, err = ours(m.Binary, nd)
			return err
		})
		switch {
		case err == nil:
			term = append(term, i)
		case errors.Is(err, ErrNotRunning):
			res[i].Outcome, res[i].Detail = NotRunning, why
		case errors.Is(err, ErrNotOurs):
			res[i].Outcome, res[i].Detail = LeftAlone, why
		default:
			res[i].Outcome, res[i].Detail = Failed, err.Error()
		}
	}
	waitAll := func(idx []int, within time.Duration, outcome string) []int {
		wctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		left := idx
		_ = poll(wctx, 20*time.Millisecond, func() (bool, error) {
			var still []int
			for _, i := range left {
				nd := m.Nodes[i]
				reap(nd.PID)
				if st, err := readStat(nd.PID); err == nil && !st.ended() && st.start == nd.StartTime {
					still = append(still, i)
				} else {
					res[i].Outcome, res[i].Took = outcome, api.Duration(time.Since(t0).Round(time.Millisecond))
				}
			}
			left = still
			return len(left) == 0, nil
		})
		return left
	}
	left := waitAll(term, grace, Stopped)
	var killed []int
	for _, i := range left {
		nd := m.Nodes[i]
		err := signalIf(nd.PID, syscall.SIGKILL, func() error {
			if st, _ := probe(m.Binary, nd); st != procOurs {
				return ErrNotRunning
			}
			return nil
		})
		switch {
		case err == nil:
			killed = append(killed, i)
		case errors.Is(err, ErrNotRunning):
			res[i].Outcome, res[i].Took = Stopped, api.Duration(time.Since(t0).Round(time.Millisecond))
		default:
			res[i].Outcome, res[i].Detail = Failed, err.Error()
		}
	}
	for _, i := range waitAll(killed, 5*time.Second, Killed) {
		res[i].Outcome, res[i].Detail = Failed, fmt.Sprintf("pid %d still runs after SIGTERM and SIGKILL", m.Nodes[i].PID)
	}
	for _, i := range killed {
		if res[i].Outcome == Killed {
			res[i].Detail = fmt.Sprintf("still running %v after SIGTERM", grace)
		}
	}
	return res
}

// stopInstances kills the instances that the process driver of the node
// at home left running: an instance outlives its node (node/runtime/process
// re-adopts it at the next start), but not its testnet. Each is recognised
// by the PID and start time its record holds, and its whole process group
// goes (it leads one). It returns how many it killed.
func stopInstances(home string) int {
	recs, _ := filepath.Glob(filepath.Join(home, node.InstancesDir, "*", process.RecordFile))
	killed := 0
	for _, p := range recs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r struct {
			PID        int    `json:"pid"`
			StartTicks uint64 `json:"start_ticks"`
		}
		if json.Unmarshal(b, &r) != nil || r.PID <= 0 {
			continue
		}
		if st, err := readStat(r.PID); err != nil || st.ended() || st.start != r.StartTicks {
			continue // ended, or its PID is another process's now
		}
		if killGroup(r.PID) == nil {
			killed++
		}
	}
	return killed
}
