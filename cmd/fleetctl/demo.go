package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fleetctl/fleetctl"
	"github.com/fleetctl/fleetctl/agent"
	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/preview"
	"github.com/fleetctl/fleetctl/reconcile/looppool"
	"github.com/fleetctl/fleetctl/schema"
)

type demoCmd struct {
	File     string        `short:"f" placeholder:"FILE" help:"The fleet to run locally; its addresses and pool paths are replaced by local ones (default: fleet.yaml.example, built into fleetctl)."`
	For      time.Duration `placeholder:"DURATION" help:"Tear the fleet down after DURATION once it has converged (default: on Ctrl-C)."`
	Keep     bool          `help:"Leave the fleet running and print how to use and remove it."`
	Dir      string        `placeholder:"DIR" help:"Directory for the demo's data dirs, pool images and logs (default: a new temporary directory)."`
	PoolSize string        `default:"1GiB" help:"Size of each pool's loop image (sparse)."`
}

func (demoCmd) Help() string {
	return `Starts the fleet of FILE on this machine: each appliance an agent process
on 127.0.0.1 with its own loop-mounted btrfs pools in a temporary directory.
Without -f it runs fleet.yaml.example, which fleetctl carries, so it runs
from any directory. It applies the spec, waits until every appliance has
reconciled it, prints the status and the diff (which is then empty), and
tears everything down (processes, mounts, loop devices, data dirs) on
Ctrl-C or after --for, except the agents' logs: it prints where they are
and the rm command that removes them.

It needs root and btrfs (the kernel module and btrfs-progs), and says so
when it cannot run.

  sudo fleetctl demo --for 1m
  sudo fleetctl demo --keep      # then: export FLEETCTL_DATA_DIR=...`
}

// demoAppliance is one appliance of the demo fleet.
type demoAppliance struct {
	name    string
	addr    string
	dataDir string
	cmd     *exec.Cmd
	pools   []*looppool.Pool
}

// demoFleet is what the demo made, so that it can be torn down.
type demoFleet struct {
	name       string // the spec's fleet: name, which names its CA
	dir        string
	ownDir     bool
	appliances []*demoAppliance
}

func (c *demoCmd) Run(e env) error {
	start := time.Now()
	if err := looppool.Available(); err != nil {
		return fmt.Errorf("fleetctl demo cannot run here: %w", err)
	}
	name, data, spec, err := c.loadSpec(e)
	if err != nil {
		return err
	}
	var size schema.Quota
	if err := size.UnmarshalText([]byte(c.PoolSize)); err != nil {
		return fmt.Errorf("--pool-size: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	f := &demoFleet{dir: c.Dir}
	if f.dir == "" {
		if f.dir, err = os.MkdirTemp("", "fleetctl-demo-"); err != nil {
			return err
		}
		f.ownDir = true
	} else if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			f.teardown(e)
		}
	}()

	localYAML, err := f.build(ctx, e, spec, data, int64(size))
	if err != nil {
		return err
	}
	specPath := filepath.Join(f.dir, "fleet.yaml")
	if err := os.WriteFile(specPath, localYAML, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Local copy of %s with 127.0.0.1 addresses and loop pools: %s\n", name, specPath)
	if err := f.startAgents(ctx, e); err != nil {
		return err
	}
	first := f.appliances[0]
	creds, _, _, err := agent.LocalAdmin(ctx, first.dataDir)
	if err != nil {
		return err
	}
	cl, err := client.NewClient(first.addr, creds, first.name)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := f.waitMembers(ctx, cl); err != nil {
		return err
	}

	fmt.Fprintf(e.stdout, "\n$ fleetctl apply -f %s --wait\n", specPath)
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	res, err := cl.Apply(actx, client.ApplyRequest{YAML: string(localYAML)})
	cancel()
	if err != nil {
		return err
	}
	local, err := schema.Parse(specPath, localYAML)
	if err != nil {
		return err
	}
	if err := schema.Diff(nil, local).Render(e.stdout, useColor(e, false)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Applied as generation %d.\n", res.Generation)
	if err := waitReconciled(e, cl, res.Generation, 2*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "The demo fleet converged %.1fs after start.\n", time.Since(start).Seconds())

	fmt.Fprintf(e.stdout, "\n$ fleetctl status\n")
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := cl.Status(sctx)
	cancel()
	if err != nil {
		return err
	}
	if err := (&statusCmd{outputFlag: outputFlag{Output: "text"}}).print(e, st); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\n$ fleetctl diff -f %s\n", specPath)
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	plan, err := cl.Plan(dctx, string(localYAML))
	cancel()
	if err != nil {
		return err
	}
	if err := (preview.Report{StoredGeneration: res.Generation, Changes: schema.Diff(local, local), Appliances: plan.Appliances}).Render(e.stdout, useColor(e, false)); err != nil {
		return err
	}

	if c.Keep {
		keep = true
		return f.printKeep(e, specPath)
	}
	if c.For > 0 {
		fmt.Fprintf(e.stderr, "\nThe fleet runs for %v (Ctrl-C stops it sooner); logs in %s.\n", c.For, f.dir)
		select {
		case <-ctx.Done():
		case <-time.After(c.For):
		}
	} else {
		fmt.Fprintf(e.stderr, "\nThe fleet runs until Ctrl-C; logs in %s. In another shell:\n  export FLEETCTL_DATA_DIR=%s\n  fleetctl status\n", f.dir, first.dataDir)
		<-ctx.Done()
	}
	return nil
}

// loadSpec reads -f FILE, or without it the example fleet built into
// fleetctl.
func (c *demoCmd) loadSpec(e env) (name string, data []byte, spec *schema.Spec, err error) {
	if c.File != "" {
		return loadSpec(e, c.File)
	}
	name, data = fleetctl.ExampleFleetName+" (built in)", fleetctl.ExampleFleet()
	spec, err = parseSpec(e, name, data)
	return name, data, spec, err
}

// build makes the loop pools and ports of every appliance and returns the
// spec rewritten to use them (comments kept).
func (f *demoFleet) build(ctx context.Context, e env, spec *schema.Spec, data []byte, size int64) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	f.name = spec.Fleet
	for _, a := range spec.Appliances {
		port, err := freeLocalPort()
		if err != nil {
			return nil, err
		}
		da := &demoAppliance{name: a.Name, addr: "127.0.0.1:" + strconv.Itoa(port), dataDir: filepath.Join(f.dir, a.Name)}
		f.appliances = append(f.appliances, da)
		setScalar(&doc, []string{"appliances", a.Name, "address"}, da.addr)
		for _, p := range a.Pools {
			fmt.Fprintf(e.stderr, "Making pool %s/%s: a %s btrfs image on a loop device…\n", a.Name, p.Name, schema.Quota(size))
			pool, err := looppool.Create(ctx, f.dir, a.Name+"-"+p.Name, size)
			if err != nil {
				return nil, fmt.Errorf("pool %s/%s: %w", a.Name, p.Name, err)
			}
			da.pools = append(da.pools, pool)
			setScalar(&doc, []string{"appliances", a.Name, "pools", p.Name, "path"}, pool.Path())
		}
	}
	return marshalYAML(&doc)
}

// setScalar sets the scalar at a path of names through the spec's YAML: a
// mapping key, or in a list the item whose name: is the step.
func setScalar(n *yaml.Node, path []string, value string) {
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	for i, step := range path {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == step {
					n, found = n.Content[j+1], true
					break
				}
			}
			if !found {
				return
			}
		case yaml.SequenceNode:
			var item *yaml.Node
			for _, it := range n.Content {
				for j := 0; j+1 < len(it.Content); j += 2 {
					if it.Content[j].Value == "name" && it.Content[j+1].Value == step {
						item = it
					}
				}
			}
			if item == nil {
				return
			}
			n = item
		}
		if i == len(path)-1 && n.Kind == yaml.ScalarNode {
			n.Value, n.Style, n.Tag = value, 0, "!!str"
		}
	}
}

func (f *demoFleet) startAgents(ctx context.Context, e env) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// The others join with the first agent's join token, read from its
	// data dir (mode 0600): never in argv, where every user sees it.
	tokenFile := filepath.Join(f.appliances[0].dataDir, "join-token")
	for i, a := range f.appliances {
		args := []string{"agent", "--name", a.name, "--data-dir", a.dataDir, "--listen", a.addr, "--reconcile-interval", "5s"}
		if i == 0 {
			args = append(args, "--bootstrap", "--fleet", f.name)
		} else {
			args = append(args, "--join", f.appliances[0].addr, "--token-file", tokenFile)
		}
		logf, err := os.OpenFile(filepath.Join(f.dir, a.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		a.cmd = exec.Command(exe, args...)
		a.cmd.Stdout, a.cmd.Stderr = logf, logf
		// Its own process group: a Ctrl-C reaches the demo, which stops the
		// agents in order, and --keep leaves them running after it exits.
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		fmt.Fprintf(e.stderr, "Starting agent %s on %s…\n", a.name, a.addr)
		if err := a.cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start agent %s: %w", a.name, err)
		}
		logf.Close()
		if i == 0 {
			if err = waitFile(ctx, tokenFile, 30*time.Second); err != nil {
				return fmt.Errorf("agent %s did not make its join token (see %s.log): %w", a.name, a.name, err)
			}
			// The agent writes its identity just after its credentials;
			// the demo's client reads both.
			if err = waitFile(ctx, filepath.Join(a.dataDir, "identity.json"), 30*time.Second); err != nil {
				return fmt.Errorf("agent %s did not record its identity (see %s.log): %w", a.name, a.name, err)
			}
		}
	}
	return nil
}

// waitFile waits until the file at path holds something: the agents
// write their files whole (renamed into place), so then it is complete.
func waitFile(ctx context.Context, path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		b, err := pki.ReadFile(path)
		if err == nil && len(b) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %v", path, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitMembers waits until every agent is a healthy member of the fleet.
func (f *demoFleet) waitMembers(ctx context.Context, cl *client.Client) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := cl.Status(sctx)
		cancel()
		if err == nil && st.Leader != "" && len(st.Members) == len(f.appliances) {
			healthy := 0
			for _, m := range st.Members {
				if m.Health == client.HealthHealthy {
					healthy++
				}
			}
			if healthy == len(f.appliances) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("not every agent joined")
			}
			return fmt.Errorf("the demo fleet did not form within a minute (logs in %s): %w", f.dir, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// printKeep writes a teardown script and says how to use the running fleet.
func (f *demoFleet) printKeep(e env, specPath string) error {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Removes the fleetctl demo fleet: agents, mounts, loop devices, files.\n")
	for _, a := range f.appliances {
		if a.cmd != nil && a.cmd.Process != nil {
			fmt.Fprintf(&b, "kill %d 2>/dev/null\n", a.cmd.Process.Pid)
		}
	}
	b.WriteString("sleep 2\n")
	for _, a := range f.appliances {
		for _, p := range a.pools {
			fmt.Fprintf(&b, "umount %s && losetup -d %s\n", p.Path(), p.Device())
		}
	}
	fmt.Fprintf(&b, "rm -rf %s\n", f.dir)
	script := filepath.Join(f.dir, "teardown.sh")
	if err := os.WriteFile(script, []byte(b.String()), 0o700); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `
The demo fleet keeps running. Point the CLI at it with:

  export FLEETCTL_DATA_DIR=%s
  fleetctl status
  fleetctl diff -f %s

Logs are in %s. Remove everything with:

  sh %s
`, f.appliances[0].dataDir, specPath, f.dir, script)
	return nil
}

// teardown stops the agents (SIGTERM, then SIGKILL after 10s), unmounts and
// detaches the pools, and empties the demo's directory if it made it,
// but for the agents' logs: they are what tells why a demo went wrong,
// so they stay until the operator removes them.
func (f *demoFleet) teardown(e env) {
	fmt.Fprintln(e.stderr, "\nTearing the demo fleet down…")
	for _, a := range f.appliances {
		if a.cmd != nil && a.cmd.Process != nil {
			_ = a.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, a := range f.appliances {
		if a.cmd == nil || a.cmd.Process == nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = a.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = a.cmd.Process.Kill()
			<-done
		}
	}
	ok := true
	for _, a := range f.appliances {
		for _, p := range a.pools {
			if err := p.Close(); err != nil {
				ok = false
				fmt.Fprintf(e.stderr, "  pool %s: %v\n", p.Path(), err)
			}
		}
	}
	if f.ownDir && ok {
		if err := removeAllBut(f.dir, ".log"); err != nil {
			fmt.Fprintf(e.stderr, "  %v\n", err)
		}
	}
	if ok {
		fmt.Fprintln(e.stderr, "Stopped the agents, unmounted the pools, detached the loop devices.")
	}
	var logs []string
	for _, a := range f.appliances {
		if _, err := os.Stat(filepath.Join(f.dir, a.name+".log")); err == nil {
			logs = append(logs, a.name+".log")
		}
	}
	switch {
	case len(logs) == 0:
	case f.ownDir:
		fmt.Fprintf(e.stderr, "The agents' logs are kept in %s: %s. Remove them with:\n  rm -r %s\n", f.dir, strings.Join(logs, ", "), f.dir)
	default:
		fmt.Fprintf(e.stderr, "The agents' logs are in %s (--dir): %s.\n", f.dir, strings.Join(logs, ", "))
	}
}

// removeAllBut removes everything in dir except the files named *suffix.
func removeAllBut(dir, suffix string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, en := range entries {
		if en.Type().IsRegular() && strings.HasSuffix(en.Name(), suffix) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, en.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// freeLocalPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
