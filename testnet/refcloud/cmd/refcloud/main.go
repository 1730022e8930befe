// Command refcloud serves the reference cloud of the http runtime driver
// (docs/driver-http.yaml) on an address, for operators who try the http
// driver by hand:
//
//	refcloud -listen 127.0.0.1:8090 -dir /var/tmp/refcloud -token-file token
//
// and in the seller's node config: the http driver with URL
// http://127.0.0.1:8090 and the same token. SIGINT or SIGTERM stops it and
// every instance it runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spotmesh/spotmesh/testnet/refcloud"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "refcloud:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := refcloud.DefaultConfig()
	listen := flag.String("listen", "127.0.0.1:8090", "`address` to serve the contract on")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "refcloud"), "`directory` of the instances")
	tokenFile := flag.String("token-file", "", "`file` holding the bearer token requests must carry (none: no token)")
	flag.StringVar(&cfg.BindHost, "bind", cfg.BindHost, "`IP` instances listen on")
	flag.StringVar(&cfg.AdvertiseHost, "advertise", "", "`host` in the endpoints handed to buyers (default: -bind)")
	flag.Parse()
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	cfg.Dir = abs
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("-token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cloud, err := refcloud.New(cfg, log)
	if err != nil {
		return err
	}
	defer cloud.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: cloud, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("refcloud serving", "addr", ln.Addr().String(), "dir", cfg.Dir, "token", cfg.Token != "")
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
