package main

import (
	"bufio"
	"context"
	"crypto/rand"
	varint "encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// procStatus reads a field of /proc/<pid>/status in KiB.
func procStatus(pid int, field string) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// BenchmarkDaemonBook100k measures the whole node process holding a book of
// 100,000 offers: a real daemon learns them by book sync from a peer, and
// its resident memory is read from /proc once the book is full. Run with
// -benchtime=1x.
func BenchmarkDaemonBook100k(b *testing.B) {
	const n = 100_000
	bin := binaryB(b)
	// A peer holding n signed offers from 16 sellers, serving book sync.
	keys := make([]crypto.PrivKey, 16)
	ids := make([]peer.ID, len(keys))
	for i := range keys {
		keys[i], _, _ = crypto.GenerateEd25519Key(rand.Reader)
		ids[i], _ = peer.IDFromPrivateKey(keys[i])
	}
	now := time.Now()
	regions := []string{"eu-de", "eu-fr", "eu-nl", "us-east", "us-west", "ap-sg", "ap-jp", "sa-br"}
	raws := make([][]byte, n)
	for i := range raws {
		k := i % len(keys)
		o := &protocol.Offer{
			Version: protocol.OfferVersion, Seller: ids[k], Key: fmt.Sprintf("o-%d", i), Region: regions[i%len(regions)],
			Hardware:         protocol.Hardware{Profile: fmt.Sprintf("c%d", 1+i%32), VCPU: uint32(1 + i%32), Memory: uint64(1+i%64) << 30, Disk: 40 << 30, Arch: "amd64"},
			Slots:            uint32(i % 20),
			Price:            protocol.Price{Micro: int64(1000 + i%90000), Currency: "USD"},
			MaxLease:         protocol.MillisOf(72 * time.Hour),
			Formats:          []string{"bundle", "qcow2", "raw"},
			MaxApplianceSize: 20 << 30,
			ReceiptInterval:  protocol.MillisOf(time.Minute),
			PaymentGrace:     protocol.MillisOf(5 * time.Minute),
			Addrs:            []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + ids[k].String()},
			IssuedAt:         protocol.TimeOf(now),
			ExpiresAt:        protocol.TimeOf(now.Add(time.Hour)),
		}
		raw, err := protocol.Sign(o, keys[k])
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = raw
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	h.SetStreamHandler(node.BookSyncProt, func(s network.Stream) {
		defer s.Close()
		w := bufio.NewWriterSize(s, 1<<16)
		var lb [varint.MaxVarintLen64]byte
		for _, raw := range raws {
			w.Write(lb[:varint.PutUvarint(lb[:], uint64(len(raw)))])
			w.Write(raw)
		}
		w.Flush()
	})

	home := filepath.Join(b.TempDir(), "A")
	if out, err := exec.Command(bin, "init", "--home", home).CombinedOutput(); err != nil {
		b.Fatalf("init: %v %s", err, out)
	}
	cmd := exec.Command(bin, "run", "--home", home, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	var cl *api.Client
	waitB(b, 30*time.Second, func() error {
		addr, err := node.ReadAPIAddr(home)
		if err != nil {
			return err
		}
		tok, err := node.ReadToken(home)
		if err != nil {
			return err
		}
		cl = api.NewClient(addr, tok)
		return cl.Health(context.Background())
	})
	b.ResetTimer()
	t0 := time.Now()
	addr := h.Addrs()[0].String() + "/p2p/" + h.ID().String()
	if _, err := cl.Connect(context.Background(), addr); err != nil {
		b.Fatal(err)
	}
	waitB(b, 5*time.Minute, func() error {
		r, err := cl.Book(context.Background(), api.BookQuery{Limit: 1})
		if err != nil {
			return err
		}
		if r.Total < n {
			return fmt.Errorf("book holds %d of %d", r.Total, n)
		}
		return nil
	})
	took := time.Since(t0)
	b.StopTimer()
	rss, err := procStatus(cmd.Process.Pid, "VmRSS")
	if err != nil {
		b.Fatal(err)
	}
	hwm, _ := procStatus(cmd.Process.Pid, "VmHWM")
	// A query over the full book, through the API, for scale.
	t1 := time.Now()
	const queries = 200
	for i := 0; i < queries; i++ {
		if _, err := cl.Book(context.Background(), api.BookQuery{Region: "eu", VCPU: ">=4", MaxPrice: "0.05USD/h", Sort: "price", Limit: 50}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rss)/1024, "rss-MiB")
	b.ReportMetric(float64(hwm)/1024, "peak-rss-MiB")
	b.ReportMetric(float64(n)/took.Seconds(), "synced-offers/s")
	b.ReportMetric(float64(time.Since(t1).Microseconds())/queries/1000, "api-query-ms")
	b.ReportMetric(0, "ns/op")
}

func binaryB(b *testing.B) string {
	dir := b.TempDir()
	bin := filepath.Join(dir, "spotmesh")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func waitB(b *testing.B, within time.Duration, f func() error) {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not within %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
