package appliance

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGateway(t *testing.T) {
	const size = 5<<20 + 77
	s := newNode(t, nodeOpts{})
	info, sum := importPRNG(t, s.Service, 41, size)
	other, _ := importPRNG(t, s.Service, 42, 1000)
	if _, err := s.Remove(context.Background(), other.CID); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(newPRNG(41, size))
	srv := httptest.NewServer(s.GatewayHandler())
	defer srv.Close()

	get := func(method, path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	t.Run("whole", func(t *testing.T) {
		resp, body := get("GET", "/ipfs/"+info.CID.String(), nil)
		if resp.StatusCode != http.StatusOK || sumOf(t, bytes.NewReader(body)) != sum {
			t.Fatalf("GET: %s, %d bytes", resp.Status, len(body))
		}
	})
	t.Run("range", func(t *testing.T) {
		resp, body := get("GET", "/ipfs/"+info.CID.String(), map[string]string{"Range": "bytes=1048570-1048589"})
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, all[1048570:1048590]) {
			t.Fatalf("range GET: %s, %q", resp.Status, body)
		}
		if cr := resp.Header.Get("Content-Range"); cr != "bytes 1048570-1048589/5242957" {
			t.Errorf("Content-Range %q", cr)
		}
		resp, body = get("GET", "/ipfs/"+info.CID.String(), map[string]string{"Range": "bytes=-10"})
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, all[size-10:]) {
			t.Fatalf("suffix range GET: %s, %q", resp.Status, body)
		}
	})
	t.Run("head", func(t *testing.T) {
		resp, _ := get("HEAD", "/ipfs/"+info.CID.String(), nil)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
			t.Fatalf("HEAD: %s, length %d", resp.Status, resp.ContentLength)
		}
	})

	refusals := []struct {
		name, method, path string
		status             int
		says               string
	}{
		{"not pinned", "GET", "/ipfs/" + other.CID.String(), http.StatusForbidden, "not pinned"},
		{"not here", "GET", "/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", http.StatusNotFound, "never fetches"},
		{"not a CID", "GET", "/ipfs/hello", http.StatusBadRequest, "not a CID"},
		{"ipns", "GET", "/ipns/example.com", http.StatusNotFound, "/ipfs/<cid>"},
		{"write", "POST", "/ipfs/" + info.CID.String(), http.StatusMethodNotAllowed, "read-only"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			resp, body := get(r.method, r.path, nil)
			if resp.StatusCode != r.status || !strings.Contains(string(body), r.says) {
				t.Fatalf("%s %s: %s %q; want %d saying %q", r.method, r.path, resp.Status, body, r.status, r.says)
			}
		})
	}
}
