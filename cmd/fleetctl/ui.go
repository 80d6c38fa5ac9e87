package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/ui"
)

type uiCmd struct {
	clientFlags
	Listen  string `default:"127.0.0.1:8470" placeholder:"HOST:PORT" help:"Where the dashboard listens: a loopback address only (port 0 picks a free one)."`
	URLFile string `name:"url-file" placeholder:"FILE" help:"Also write the login URL to FILE (mode 0600), for scripts."`
}

func (uiCmd) Help() string {
	return `Serves a dashboard of the fleet to a browser on this machine: the
members and leader, the appliances with their pools and shares, replication
(last success, lag, the trail), the witness (leases, its log, round trips),
every snapshot, a plan view that previews a fleet.yaml as 'fleetctl diff'
does and applies it with apply's approval step, and a switchover with a
confirmation. It talks to the fleet as the other commands do (--data-dir,
or --server with --credential) and the agents enforce the same rules.

It listens on loopback only and prints, once, a login URL with a random
token; opening it logs the browser in (a cookie) and drops the token from
the address bar. To use it from another machine, forward the port over ssh:
  ssh -L 8470:127.0.0.1:8470 nas1 fleetctl ui --data-dir /var/lib/fleetctl`
}

func (c *uiCmd) Run(e env) error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.Listen, err)
	}
	if !ui.IsLoopbackHost(host) {
		return fmt.Errorf("--listen %s: the dashboard listens on loopback only (127.0.0.1, [::1] or localhost); to reach it from another machine, forward it: ssh -L 8470:127.0.0.1:8470 APPLIANCE fleetctl ui", c.Listen)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	srv, err := ui.New(cl, ui.Options{Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	url := fmt.Sprintf("http://%s/?token=%s", ln.Addr(), srv.Token())
	if c.URLFile != "" {
		if err := pki.WriteFile(c.URLFile, []byte(url+"\n")); err != nil {
			ln.Close()
			return fmt.Errorf("--url-file: %w", err)
		}
	}
	fmt.Fprintf(e.stdout, "The fleet's dashboard is at (the token logs a browser in; keep it to yourself):\n  %s\n", url)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go srv.Run(ctx)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dashboard: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}
