// Command echo is the appliance the driver conformance suite runs: an HTTP
// server on $HOST:$PORT that tells its lease, its access key and its
// environment, and burns CPU, exits or spawns a child on request.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		// A member of the instance's process group that ignores SIGTERM,
		// so that only SIGKILL ends it.
		signal.Ignore(syscall.SIGTERM)
		select {}
	}
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "lease %s\n", os.Getenv("SPOTMESH_LEASE_ID"))
	})
	mux.HandleFunc("/key", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(os.Getenv("SPOTMESH_ACCESS_KEY_FILE"))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Clean(r.URL.Query().Get("name")))
		if err != nil {
			http.Error(w, err.Error(), 404)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getpid())
	})
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		// Burn ms of CPU time (not wall time: a busy machine gives less
		// CPU than wall time), up to 30 s of wall time.
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		cpu0 := cpuTime()
		deadline := time.Now().Add(30 * time.Second)
		x := 0
		for cpuTime()-cpu0 < time.Duration(ms)*time.Millisecond && time.Now().Before(deadline) {
			for i := 0; i < 100000; i++ {
				x += i
			}
		}
		fmt.Fprint(w, x%2)
	})
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := range b {
			b[i] = byte(i)
		}
		fmt.Fprint(w, len(b))
	})
	mux.HandleFunc("/ignore-term", func(w http.ResponseWriter, r *http.Request) {
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		exe, _ := os.Executable()
		c := exec.Command(exe, "child")
		if err := c.Start(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		go c.Wait()
		fmt.Fprint(w, c.Process.Pid)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Fprint(w, "bye")
		w.(http.Flusher).Flush()
		go func() {
			time.Sleep(20 * time.Millisecond)
			os.Exit(code)
		}()
	})
	l, err := net.Listen("tcp", net.JoinHostPort(host, os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "echo: serving on", l.Addr())
	if err := http.Serve(l, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
