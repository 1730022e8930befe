package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// TestEchoVerb runs the hidden verb in-process: it serves the lease's ID on
// $PORT until its context ends, and help does not list it.
func TestEchoVerb(t *testing.T) {
	port := freePort(t)
	env := map[string]string{"PORT": strconv.Itoa(port), "HOST": "127.0.0.1", "SPOTMESH_LEASE_ID": "bafylease", "SPOTMESH_APPLIANCE_CID": "bafyappl"}
	ctx, cancel := context.WithCancel(context.Background())
	var errb strings.Builder
	c := &cli{stdout: io.Discard, stderr: &errb, now: time.Now, getenv: func(k string) string { return env[k] }}
	done := make(chan int, 1)
	go func() { done <- c.main(ctx, []string{procnet.EchoVerb}) }()
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var body string
	eventually(t, 10*time.Second, func() error {
		resp, err := hc.Get("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/anything")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	if !strings.Contains(body, "lease bafylease") || !strings.Contains(body, "appliance bafyappl") {
		t.Fatalf("echo answered %q", body)
	}
	tr.CloseIdleConnections()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("echo exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("echo did not stop when its context ended")
	}

	if got := spotmesh(t, map[string]string{}, procnet.EchoVerb); got.code != exitUsage || !strings.Contains(got.stderr, "PORT") {
		t.Fatalf("echo without PORT: %+v", got)
	}
	if got := spotmesh(t, nil, "help"); strings.Contains(got.stdout, procnet.EchoVerb) || !strings.Contains(got.stdout, "testnet") {
		t.Fatalf("help lists the hidden verb, or not testnet:\n%s", got.stdout)
	}
	if got := spotmesh(t, nil, "help", "testnet", "scenario"); got.code != 0 || !strings.Contains(got.stdout, "--fault") {
		t.Fatalf("help testnet scenario: %+v", got)
	}
}

func TestScenarioFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"testnet", "scenario", "--dir", "x", "--fault", "kill-buyer"}, `--fault "kill-buyer"`},
		{[]string{"testnet", "scenario", "--dir", "x", "--lease", "1s"}, "--lease 1s"},
		{[]string{"testnet", "scenario", "--dir", "x", "--receipts", "0"}, "--receipts 0"},
		{[]string{"testnet", "scenario"}, "--dir"},
		{[]string{"demo", "--sellers", "0"}, "--sellers 0"},
	} {
		got := spotmesh(t, nil, tc.args...)
		if got.code != exitUsage || !strings.Contains(got.stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 with %q", tc.args, got.code, got.stderr, tc.want)
		}
	}
}
