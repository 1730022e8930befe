package process

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spotmesh/spotmesh/node/runtime"
)

// recordVersion is the version of the instance record this code writes.
// A record of another version is left alone, with a warning.
const recordVersion = 1

// record is one instance as the driver keeps it on disk, in
// <Dir>/instances/<lease>/instance.json, written whole (temporary file,
// fsync, rename, fsync of the directory) at every state change.
type record struct {
	Version  int           `json:"version"`
	LeaseID  string        `json:"lease_id"`
	State    runtime.State `json:"state"`
	Reason   string        `json:"reason,omitempty"`
	ExitCode int           `json:"exit_code"`
	// PID and StartTicks (field 22 of /proc/<pid>/stat) name the main
	// process, which leads its own session and process group (PGID =
	// PID). PID 0: the node stopped before the process started.
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	Port       int    `json:"port,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	// Cgroup is the instance's cgroup directory, "" for none.
	Cgroup     string                `json:"cgroup,omitempty"`
	Limits     runtime.Limits        `json:"limits"`
	Enforced   []runtime.Enforcement `json:"enforced,omitempty"`
	LimitNotes []string              `json:"limit_notes,omitempty"`
	Ends       time.Time             `json:"ends,omitzero"`
	Created    time.Time             `json:"created"`
	Started    time.Time             `json:"started,omitzero"`
	Ended      time.Time             `json:"ended,omitzero"`
	// CPU and MemoryPeak are the highest counters seen, so that they never
	// go back when a process of the instance is gone.
	CPU        time.Duration `json:"cpu_ns"`
	MemoryPeak uint64        `json:"memory_peak"`
	// Terminating: Terminate began; an exit is then a termination.
	Terminating bool `json:"terminating,omitempty"`
}

// instance turns the record into what the driver reports; now is the
// driver's clock for the wall time of a live instance.
func (r *record) instance(now time.Time) runtime.Instance {
	in := runtime.Instance{
		LeaseID: r.LeaseID, State: r.State, Endpoint: r.Endpoint, Reason: r.Reason, ExitCode: r.ExitCode,
		PID: r.PID, Created: r.Created, Started: r.Started, Ended: r.Ended, Ends: r.Ends,
		Limits: r.Limits, Enforced: append([]runtime.Enforcement(nil), r.Enforced...), LimitNotes: append([]string(nil), r.LimitNotes...),
		Usage: runtime.Usage{CPU: r.CPU, MemoryPeak: r.MemoryPeak},
	}
	if !r.Started.IsZero() {
		end := now
		if !r.Ended.IsZero() {
			end = r.Ended
		}
		if end.After(r.Started) {
			in.Usage.Wall = end.Sub(r.Started)
		}
	}
	return in
}

// RecordFile is the name of an instance's record in its directory.
const RecordFile = "instance.json"

// save writes the record into dir.
func (r *record) save(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, RecordFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("save instance record: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("save instance record: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save instance record: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save instance record: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, RecordFile)); err != nil {
		return fmt.Errorf("save instance record: %w", err)
	}
	return syncDir(dir)
}

// loadRecord reads the record in dir.
func loadRecord(dir string) (record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("%s: %w", filepath.Join(dir, RecordFile), err)
	}
	if r.Version != recordVersion {
		return record{}, fmt.Errorf("%s: record version %d, this node knows %d: upgrade the node", filepath.Join(dir, RecordFile), r.Version, recordVersion)
	}
	if err := runtime.ValidateLeaseID(r.LeaseID); err != nil || r.LeaseID != filepath.Base(dir) {
		return record{}, fmt.Errorf("%s: lease ID %q does not name its directory", filepath.Join(dir, RecordFile), r.LeaseID)
	}
	if !r.State.Valid() {
		return record{}, fmt.Errorf("%s: unknown state %q", filepath.Join(dir, RecordFile), r.State)
	}
	return r, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
