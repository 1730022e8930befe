package main

import (
	"strings"
	"testing"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// TestTestnetPartitionOnLoopback: partition and heal say what a testnet
// on loopback lacks, and partition names an unknown node as a bad value.
func TestTestnetPartitionOnLoopback(t *testing.T) {
	dir := stoppedTestnet(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"testnet", "partition", "--dir", dir, "seller-1"}, exitFailed, "runs on loopback; partitions need one booted with 'spotmesh testnet up --netns'"},
		{[]string{"testnet", "heal", "--dir", dir}, exitFailed, "runs on loopback"},
		{[]string{"testnet", "partition", "--dir", t.TempDir(), "seller-1"}, exitFailed, "no testnet in"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			got := spotmesh(t, nil, tc.args...)
			if got.code != tc.code || got.stdout != "" || !strings.Contains(got.stderr, tc.stderr) {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q; want exit %d, stderr with %q",
					tc.args, got.code, got.stdout, got.stderr, tc.code, tc.stderr)
			}
		})
	}
}

// TestTestnetUpNetnsFallsBack: without what namespaces need, up --netns
// says why on stderr and runs on loopback.
func TestTestnetUpNetnsFallsBack(t *testing.T) {
	var stderr strings.Builder
	c := &cli{stderr: &stderr}
	if netnsOrLoopback(c, false) || stderr.Len() > 0 {
		t.Fatalf("without --netns: %q", stderr.String())
	}
	got := netnsOrLoopback(c, true)
	if err := procnet.CheckNetns(); err == nil {
		if !got || stderr.Len() > 0 {
			t.Fatalf("this machine runs namespaces, yet %v, %q", got, stderr.String())
		}
		return
	}
	if got || !strings.Contains(stderr.String(), "running on loopback instead") {
		t.Fatalf("without root: %v, %q", got, stderr.String())
	}
}
