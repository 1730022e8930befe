//go:build linux

package process_test

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
)

// BenchmarkProvisionToAnswer measures, for the echo bundle (one 5.9 MB
// executable; and as a tar archive), the time from Provision to the first
// TCP connection its endpoint accepts, and to the driver reporting it
// running. Terminate is not timed.
//
// The baseline is the machine's own floor: exec of the same program
// (already on disk, no copy, no limits) to its first accepted connection.
func BenchmarkProvisionToAnswer(b *testing.B) {
	b.Run("baseline-exec", func(b *testing.B) {
		var answer []time.Duration
		for b.Loop() {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			port := l.Addr().(*net.TCPAddr).Port
			l.Close()
			t0 := time.Now()
			cmd := exec.Command(echoPath)
			cmd.Env = []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1"}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			for {
				c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
				if err == nil {
					c.Close()
					break
				}
				<-time.After(time.Millisecond)
			}
			answer = append(answer, time.Since(t0))
			b.StopTimer()
			cmd.Process.Kill()
			cmd.Wait()
			b.StartTimer()
		}
		b.ReportMetric(quantile(answer, 0.5), "answer-p50-ms")
		b.ReportMetric(quantile(answer, 0.99), "answer-p99-ms")
		b.ReportMetric(0, "ns/op")
	})
	for _, kind := range []string{"executable", "tar"} {
		b.Run(kind, func(b *testing.B) {
			cfg := testConfig(b, b.TempDir())
			d := newDriver(b, cfg)
			defer d.Close()
			gw := drivertest.NewGateway(b)
			path := echoPath
			if kind == "tar" {
				path = drivertest.TarBundle(b, echoPath, nil)
			}
			app := gw.Add(b, path)
			var answer, running, provision []time.Duration
			for b.Loop() {
				spec := drivertest.Spec(drivertest.LeaseID(), app)
				t0 := time.Now()
				in, err := d.Provision(context.Background(), spec)
				if err != nil {
					b.Fatal(err)
				}
				provision = append(provision, time.Since(t0))
				for {
					c, err := net.DialTimeout("tcp", in.Endpoint, time.Second)
					if err == nil {
						c.Close()
						break
					}
					if time.Since(t0) > 30*time.Second {
						b.Fatal("never answered")
					}
					<-time.After(time.Millisecond)
				}
				answer = append(answer, time.Since(t0))
				for {
					got, err := d.Instance(context.Background(), spec.LeaseID)
					if err != nil {
						b.Fatal(err)
					}
					if got.State == runtime.StateRunning {
						break
					}
				}
				running = append(running, time.Since(t0))
				b.StopTimer()
				if _, err := d.Terminate(context.Background(), spec.LeaseID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(quantile(provision, 0.5), "provision-p50-ms")
			b.ReportMetric(quantile(answer, 0.5), "answer-p50-ms")
			b.ReportMetric(quantile(answer, 0.99), "answer-p99-ms")
			b.ReportMetric(quantile(running, 0.5), "running-p50-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// quantile returns the p-quantile of ds in milliseconds.
func quantile(ds []time.Duration, p float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
}
