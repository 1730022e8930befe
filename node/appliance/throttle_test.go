package appliance

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/time/rate"
)

// throttleChunk is the most the proxy forwards at once, and the burst of
// its token bucket: 64 KiB is 1.3 ms at 50 MB/s, fine enough that the
// connections sharing the bucket take turns smoothly.
const throttleChunk = 64 << 10

// throttleBuffer is the kernel buffer of the proxy's sockets on the slow
// side. Linux would autotune the receive buffer of the proxy's socket to
// the upstream host up to several MiB per connection; every byte held
// there is a byte of queue in front of the bottleneck that a real uplink
// (a NIC, a tc qdisc) does not have, and it delays every answer of the
// upstream host by as much. 256 KiB per connection is 5 ms at 50 MB/s.
const throttleBuffer = 256 << 10

// throttleProxy is a TCP proxy on loopback in front of one host: each
// connection it accepts is forwarded to the target address, and the bytes
// that come back from the target (its upload) are limited by one token
// bucket shared by all connections, as if the target sat behind one slow
// uplink. The other direction is not limited. It counts the bytes in both
// directions.
type throttleProxy struct {
	ln    net.Listener
	addr  ma.Multiaddr
	limit *rate.Limiter

	target atomic.Pointer[string] // set once the target listens

	// down counts bytes from the target to the clients (limited), up the
	// other way; accepted counts connections.
	down, up, accepted atomic.Int64

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// newThrottleProxy listens on 127.0.0.1 and limits the upload of the
// target (set with setTarget before the first connection) to bytesPerSec.
// The proxy closes at the end of the test.
func newThrottleProxy(t testing.TB, bytesPerSec float64) *throttleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := manet.FromNetAddr(ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p := &throttleProxy{
		ln:    ln,
		addr:  addr,
		limit: rate.NewLimiter(rate.Limit(bytesPerSec), throttleChunk),
		conns: map[net.Conn]struct{}{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// setTarget names the address (host:port) connections are forwarded to.
func (p *throttleProxy) setTarget(hostport string) { p.target.Store(&hostport) }

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines. It is idempotent.
func (p *throttleProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.cancel()
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// open counts the connections that are open now.
func (p *throttleProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

// track registers the two sides of a connection; false once closed.
func (p *throttleProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *throttleProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *throttleProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.forward(c)
	}
}

// forward relays one client connection to the target until either side
// ends, then closes both.
func (p *throttleProxy) forward(client net.Conn) {
	defer p.wg.Done()
	target := p.target.Load()
	if target == nil {
		_ = client.Close()
		return
	}
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", *target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client, server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	if tc, ok := server.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(throttleBuffer)
	}
	if tc, ok := client.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(throttleBuffer)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = client.Close()
			_ = server.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stop()
		buf := make([]byte, throttleChunk)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				p.up.Add(int64(n))
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	func() {
		defer stop()
		buf := make([]byte, throttleChunk)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				if werr := p.limit.WaitN(p.ctx, n); werr != nil {
					return
				}
				p.down.Add(int64(n)) // before the write, so a reader sees the count of what it got
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	wg.Wait()
	p.untrack(client, server)
}

// TestThrottleProxy checks the instrument of BenchmarkFanout: bytes from
// the target reach the client intact, at no more than the rate (two
// connections sharing it), and are counted.
func TestThrottleProxy(t *testing.T) {
	const (
		rateBps = 40e6
		each    = 2 << 20
		conns   = 2
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	defer func() {
		_ = ln.Close()
		served.Wait()
	}()
	served.Add(1)
	go func() { // the target: echoes each connection's bytes back
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			go func() {
				defer served.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	p := newThrottleProxy(t, rateBps)
	p.setTarget(ln.Addr().String())

	start := time.Now()
	errc := make(chan error, conns)
	for i := range conns {
		go func() {
			errc <- func() error {
				c, err := net.Dial("tcp", p.ln.Addr().String())
				if err != nil {
					return err
				}
				defer c.Close()
				want := make([]byte, each)
				if _, err := io.ReadFull(newPRNG(uint64(i), each), want); err != nil {
					return err
				}
				werr := make(chan error, 1)
				go func() { _, err := c.Write(want); werr <- err }()
				got := make([]byte, each)
				if _, err := io.ReadFull(c, got); err != nil {
					return err
				}
				if err := <-werr; err != nil {
					return err
				}
				if string(got) != string(want) {
					return errors.New("bytes differ")
				}
				return nil
			}()
		}()
	}
	for range conns {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(start)
	total := float64(conns * each)
	if minEl := time.Duration((total - throttleChunk) / rateBps * float64(time.Second)); el < minEl {
		t.Errorf("%d bytes came back in %v, faster than the limit allows (%v)", conns*each, el, minEl)
	}
	if got := p.down.Load(); got != conns*each {
		t.Errorf("counted %d bytes down, want %d", got, conns*each)
	}
	if got := p.up.Load(); got != conns*each {
		t.Errorf("counted %d bytes up, want %d", got, conns*each)
	}
	if got := p.accepted.Load(); got != conns {
		t.Errorf("accepted %d connections, want %d", got, conns)
	}
	p.Close()
	if n := p.open(); n != 0 {
		t.Errorf("%d connections open after Close", n)
	}
}
