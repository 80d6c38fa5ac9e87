package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/agent/fence"
	"github.com/fleetctl/fleetctl/reconcile"
)

type fenceCmd struct {
	DataDir    string `name:"data-dir" required:"" env:"FLEETCTL_DATA_DIR" placeholder:"DIR" help:"The agent's data dir."`
	Btrfs      string `default:"btrfs" placeholder:"PATH" help:"The btrfs command (btrfs-progs)."`
	outputFlag `embed:""`
}

func (fenceCmd) Help() string {
	return `Makes every replicated share this appliance's agent was last active for
read-only, while the agent is not running, and records the fences in the
data dir: the agent, when it starts, keeps them read-only until it has
caught up with the fleet, renewed its lease, and seen that the share's
epoch did not move. It reads DIR/active.json and DIR/fenced.json, which the
agent keeps, not the Raft state, so it works with the fleet unreachable.

The agent already fences when it stops and when it starts, and its guard
process fences when the agent dies or hangs; this command is for what
none of them covers, as a unit file's ExecStopPost (run after the agent's
processes were killed) or by an operator before working on a box:

  ExecStopPost=/usr/local/bin/fleetctl fence --data-dir /var/lib/fleetctl

It refuses while the agent runs (the agent owns its shares then) and exits
0 when there was nothing to fence.`
}

// fenceResult is what fence --output json prints.
type fenceResult struct {
	Fenced []string `json:"fenced"`
	Errors []string `json:"errors"`
}

func (c *fenceCmd) Run(e env) error {
	pid, err := fence.RunningAgent(c.DataDir)
	if err != nil {
		return err
	}
	if pid != 0 {
		fmt.Fprintf(e.stderr, "fleetctl: the agent (pid %d) is running on %s: it fences its own shares; stop it first (it fences them as it stops)\n", pid, c.DataDir)
		return exitError(exitTrouble)
	}
	// Held throughout, so no agent starts (and unfences) meanwhile.
	lock, err := fence.LockAgent(c.DataDir, 0)
	if err != nil {
		fmt.Fprintf(e.stderr, "fleetctl: %v\n", err)
		return exitError(exitTrouble)
	}
	defer lock.Release()
	recs := fence.Records{}
	for _, file := range []string{fence.FileActive, fence.FileFenced} {
		r, err := fence.ReadRecords(c.DataDir, file)
		if err != nil {
			return err
		}
		maps.Copy(recs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done, ferr := fence.FenceAll(ctx, reconcile.NewBtrfs(c.Btrfs), c.DataDir, recs)
	res := fenceResult{Fenced: done, Errors: []string{}}
	if res.Fenced == nil {
		res.Fenced = []string{}
	}
	if ferr != nil {
		for _, err := range unjoin(ferr) {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	if c.Output == "json" {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(e.stdout, string(b))
	} else {
		switch {
		case len(recs) == 0:
			fmt.Fprintln(e.stdout, "Nothing to fence: the agent recorded no active replicated share.")
		case len(done) > 0:
			fmt.Fprintf(e.stdout, "Fenced (read-only until the agent is back and its lease is renewed): %s\n", strings.Join(done, ", "))
		default:
			fmt.Fprintf(e.stdout, "Nothing fenced: none of %s exists here.\n", strings.Join(slices.Sorted(maps.Keys(recs)), ", "))
		}
		for _, m := range res.Errors {
			fmt.Fprintf(e.stderr, "fleetctl: %s\n", m)
		}
	}
	if ferr != nil {
		return exitError(exitFailed)
	}
	return nil
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
