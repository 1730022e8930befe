package drivertest

import (
	"archive/tar"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

//go:embed testdata/echo/main.go
var echoSource []byte

// Echo builds the suite's appliance program into a directory of t and
// returns its path. It serves HTTP on $HOST:$PORT:
//
//	/               "lease <SPOTMESH_LEASE_ID>\n"
//	/key            the contents of $SPOTMESH_ACCESS_KEY_FILE
//	/env?name=X     $X
//	/file?name=F    the file F of its working directory
//	/pid            its PID
//	/burn?ms=N      burns N ms of CPU time
//	/alloc?mb=N     allocates and touches N MiB
//	/ignore-term    ignores SIGTERM from now on
//	/spawn          starts a child in its process group that ignores SIGTERM; answers its PID
//	/exit?code=N    exits with status N
//
// It needs the go command (the test's own toolchain); the build is cached
// by the go command between runs.
func Echo(t testing.TB) string {
	t.Helper()
	bin, err := BuildEcho(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuildEcho builds the echo program into dir, for tests that share one
// build beyond a single t (from TestMain).
func BuildEcho(dir string) (string, error) {
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, echoSource, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "echo")
	goCmd := filepath.Join(goroot(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	cmd := exec.Command(goCmd, "build", "-ldflags=-s -w", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the echo appliance: %v\n%s", err, out)
	}
	return bin, nil
}

func goroot() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return string(trimNL(out))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// ExecutableBundle returns the echo program itself: a one-executable
// bundle.
func ExecutableBundle(t testing.TB, echo string) string { return echo }

// TarBundle packs the echo program as run at the root of a tar archive,
// with the extra files given (name to contents, in a directory data/ when
// the name says so), and returns the archive's path.
func TarBundle(t testing.TB, echo string, extra map[string]string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	bin, err := os.ReadFile(echo)
	if err != nil {
		t.Fatal(err)
	}
	add := func(h *tar.Header, body []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "./run", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}, bin)
	dirs := map[string]bool{}
	for name, body := range extra {
		if d := filepath.Dir(name); d != "." && !dirs[d] {
			dirs[d] = true
			add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		}
		add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, []byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}
