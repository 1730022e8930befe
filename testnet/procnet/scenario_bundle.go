package procnet

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"
)

// The scenario's appliance is a bundle (a tar archive with an executable
// run at its root, see node/runtime/process) of three files:
//
//	NOTE      who packed it and when, padded to a random multiple of 512 bytes
//	run       #!/bin/sh: exec the binary next to it as 'spotmesh _echo'
//	spotmesh  the testnet's own binary
//
// 'spotmesh _echo' is a hidden verb that serves HTTP on $PORT and answers
// with the lease's ID, so the appliance needs no compiler and no network,
// and is as big as the binary (tens of MiB): a real transfer to measure.
// The padding moves the binary to another offset in the archive, so that
// its 1 MiB blocks differ from those of earlier runs' appliances, which a
// seller may still hold: every lease transfers its appliance afresh.
const (
	bundleNote = "NOTE"
	bundleRun  = "run"
	bundleBin  = BinaryName
	// EchoVerb is the hidden verb of the spotmesh binary that the
	// scenario's appliance runs.
	EchoVerb = "_echo"
)

// runScript starts the binary beside it; the process driver starts ./run
// in the bundle's directory.
var runScript = []byte("#!/bin/sh\n# spotmesh testnet scenario: the appliance serves HTTP on $PORT.\nexec \"${0%/*}/" + bundleBin + "\" " + EchoVerb + "\n")

// bundle is one buyer's appliance, ready to be written.
type bundle struct {
	bin     string // path of the binary
	binSize int64
	note    []byte
	mod     time.Time
}

// newBundle prepares buyer's appliance around the binary bin.
func newBundle(bin, buyer string, now time.Time) (*bundle, error) {
	st, err := os.Stat(bin)
	if err != nil {
		return nil, fmt.Errorf("appliance: the testnet's binary: %w", err)
	}
	note := fmt.Appendf(nil, "spotmesh testnet scenario: the appliance of %s, packed at %s.\n"+
		"./run starts the spotmesh binary beside it as 'spotmesh %s', which serves HTTP on $PORT.\n",
		buyer, now.UTC().Format(time.RFC3339Nano), EchoVerb)
	blocks := 1 + len(note)/512 + rand.IntN(2047)
	note = append(note, bytes.Repeat([]byte{'\n'}, blocks*512-len(note))...)
	return &bundle{bin: bin, binSize: st.Size(), note: note, mod: now.UTC().Truncate(time.Second)}, nil
}

// size is the archive's length in bytes: a 512-byte header per file, its
// content padded to 512 bytes, and two zero blocks at the end.
func (b *bundle) size() int64 {
	pad := func(n int64) int64 { return (n + 511) / 512 * 512 }
	return 3*512 + pad(int64(len(b.note))) + pad(int64(len(runScript))) + pad(b.binSize) + 2*512
}

// writeTo writes the archive.
func (b *bundle) writeTo(w io.Writer) error {
	f, err := os.Open(b.bin)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(w)
	put := func(name string, mode int64, size int64, body io.Reader) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: b.mod, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("appliance: %s: %w", name, err)
		}
		if _, err := io.Copy(tw, body); err != nil {
			return fmt.Errorf("appliance: %s: %w", name, err)
		}
		return nil
	}
	if err := put(bundleNote, 0o644, int64(len(b.note)), bytes.NewReader(b.note)); err != nil {
		return err
	}
	if err := put(bundleRun, 0o755, int64(len(runScript)), bytes.NewReader(runScript)); err != nil {
		return err
	}
	// The binary as it was measured: a binary that changed size since is
	// an error of the tar writer, not a short archive.
	if err := put(bundleBin, 0o755, b.binSize, io.LimitReader(f, b.binSize)); err != nil {
		return err
	}
	return tw.Close()
}
