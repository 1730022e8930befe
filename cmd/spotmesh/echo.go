package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// cmdEcho is the hidden verb that the appliance of 'testnet scenario'
// runs (procnet.EchoVerb): an HTTP server on $HOST:$PORT, as the process
// driver sets them, that answers every request with the lease's ID and
// the appliance's CID from its environment. It stops on SIGTERM or
// SIGINT. Help does not list it: it is no verb for people.
func cmdEcho(ctx context.Context, c *cli, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments: it is the appliance of 'spotmesh testnet scenario'", args[0])
	}
	port := c.getenv("PORT")
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return usagef("PORT %q: want a port number: this verb is the appliance of 'spotmesh testnet scenario', which the process driver starts with PORT set", port)
	}
	host := c.getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	lease, appliance := c.getenv("SPOTMESH_LEASE_ID"), c.getenv("SPOTMESH_APPLIANCE_CID")
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	started := time.Now().UTC()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "hello from the instance of lease %s\nappliance %s, pid %d, running since %s\n",
				lease, appliance, os.Getpid(), started.Format(time.RFC3339))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(c.stderr, "spotmesh %s: serving lease %s on http://%s/\n", procnet.EchoVerb, lease, ln.Addr())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-served
	return nil
}
