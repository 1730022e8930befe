package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/store"
)

// backupCases are the conformance cases of GET /v1/backup (the token
// cases come from unauthorizedCases).
func backupCases(t *testing.T) []apiCase {
	return []apiCase{
		{name: "backup", method: "GET", target: "/v1/backup", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if string(b) != apitest.FakeBackup {
				t.Errorf("backup = %q, want %q", b, apitest.FakeBackup)
			}
		}},
		{name: "backup, empty database", method: "GET", target: "/v1/backup", wantStatus: 200,
			setup: func(f *apitest.Fake) { f.SetBackup([]byte{}, nil) },
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				if len(b) != 0 {
					t.Errorf("backup = %q, want nothing", b)
				}
			}},
		{name: "backup, unknown parameter", method: "GET", target: "/v1/backup?since=3", wantStatus: 400, wantCode: api.CodeBadRequest,
			check: wantMessage("since")},
		{name: "backup, node stopping", method: "GET", target: "/v1/backup", wantStatus: 503, wantCode: api.CodeUnavailable,
			setup: func(f *apitest.Fake) { f.SetBackup(nil, fmt.Errorf("store: %w", store.ErrClosed)) }, check: wantMessage("stopping")},
		{name: "backup, fails before the first byte", method: "GET", target: "/v1/backup", wantStatus: 500, wantCode: api.CodeInternal,
			setup: func(f *apitest.Fake) { f.SetBackup(nil, errors.New("disk on fire")) }, check: wantMessage("disk on fire")},
	}
}

func TestBackupClient(t *testing.T) {
	big := make([]byte, 3<<20)
	rand.Read(big)
	for _, tc := range []struct {
		name        string
		data        []byte
		err         error
		want        []byte
		unreachable bool   // the client's error wraps ErrUnreachable
		code        string // the client's error is an *api.Error with this code
	}{
		{name: "small", want: []byte(apitest.FakeBackup)},
		{name: "large", data: big, want: big},
		{name: "empty", data: []byte{}, want: nil},
		{name: "fails before the first byte", err: errors.New("disk on fire"), code: api.CodeInternal},
		{name: "node stopping", err: store.ErrClosed, code: api.CodeUnavailable},
		// Cut off after the headers went out: the body ends early.
		{name: "fails after the headers", data: big, err: errors.New("disk on fire"), unreachable: true},
		// Cut off while the first bytes were still buffered: no answer.
		{name: "fails after a few bytes", data: []byte("abc"), err: errors.New("disk on fire"), unreachable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := apitest.NewFake(t)
			if tc.data != nil || tc.err != nil {
				f.SetBackup(tc.data, tc.err)
			}
			_, c := startServer(t, f)
			var buf bytes.Buffer
			err := c.Backup(context.Background(), &buf)
			switch {
			case tc.unreachable:
				if !errors.Is(err, api.ErrUnreachable) {
					t.Fatalf("Backup = %v, want an error wrapping ErrUnreachable", err)
				}
			case tc.code != "":
				if !api.IsCode(err, tc.code) || errors.Is(err, api.ErrUnreachable) {
					t.Fatalf("Backup = %v, want a refusal with code %s", err, tc.code)
				}
			case err != nil:
				t.Fatalf("Backup: %v", err)
			case !bytes.Equal(buf.Bytes(), tc.want):
				t.Fatalf("Backup wrote %d bytes, want %d", buf.Len(), len(tc.want))
			}
		})
	}
}

func TestBackupNeedsToken(t *testing.T) {
	f := apitest.NewFake(t)
	s, _ := startServer(t, f)
	bad := api.NewClient(s.Addr(), "wrong-token-0123456789abcdef")
	defer bad.CloseIdleConnections()
	var buf bytes.Buffer
	err := bad.Backup(context.Background(), &buf)
	if !api.IsCode(err, api.CodeUnauthorized) || buf.Len() != 0 {
		t.Fatalf("Backup with a wrong token = %v, wrote %q; want unauthorized and nothing", err, buf.Bytes())
	}
	// No token at all, as curl without the header.
	req, err := http.NewRequest("GET", "http://"+s.Addr()+"/v1/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(resp.Header.Get("Content-Type"), "octet-stream") {
		t.Fatalf("GET /v1/backup without a token: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestBackupClientWriteError(t *testing.T) {
	f := apitest.NewFake(t)
	_, c := startServer(t, f)
	err := c.Backup(context.Background(), errWriter{})
	if err == nil || err.Error() != "disk full" {
		t.Fatalf("Backup into a failing writer = %v, want its error as is", err)
	}
}
