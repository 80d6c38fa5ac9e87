package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fleetctl/fleetctl/agent"
	"github.com/fleetctl/fleetctl/agent/fence"
)

// runRecover is `fleetctl agent --recover --survivors NAME,...`: the
// recovery from quorum loss of a stopped agent's data dir
// (agent.Recover). It exits when done; the operator starts the agent as
// usual, so a unit file never carries --recover.
func (c *agentCmd) runRecover(e env) error {
	switch {
	case !c.Recover:
		return errors.New("--survivors is for --recover")
	case c.Bootstrap || c.Join != "":
		return errors.New("--recover acts on an existing member's data dir: give neither --bootstrap nor --join")
	}
	pid, err := fence.RunningAgent(c.DataDir)
	if err != nil {
		return fmt.Errorf("agent --recover: %w", err)
	}
	if pid != 0 {
		return fmt.Errorf("agent --recover: the agent (pid %d) is running on %s: stop it first (recovery rewrites its Raft state)", pid, c.DataDir)
	}
	// Held throughout, so no agent starts on the data dir meanwhile.
	lock, err := fence.LockAgent(c.DataDir, 0)
	if err != nil {
		return fmt.Errorf("agent --recover: %w", err)
	}
	defer lock.Release()
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rec, err := agent.Recover(ctx, agent.RecoverConfig{
		DataDir:   c.DataDir,
		Survivors: c.Survivors,
		Logger:    slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})),
	})
	if errors.Is(err, agent.ErrQuorumReachable) {
		return fmt.Errorf("agent --recover: refused, nothing changed: %w. Recovery is for a fleet that has lost its quorum for good; "+
			"start this agent again as it was and it rejoins, and remove members lost for good with 'fleetctl members remove --force NAME'", err)
	}
	if err != nil {
		return fmt.Errorf("agent --recover: nothing changed: %w", err)
	}
	self := rec.After.Servers[0].Address
	var members []string
	for _, s := range rec.After.Servers {
		members = append(members, fmt.Sprintf("%s (voter at %s)", s.ID, s.Address))
		if string(s.ID) == rec.Name {
			self = s.Address
		}
	}
	w := e.stdout
	fmt.Fprintf(w, "No quorum answers: %d of %d voters (%s), and a quorum needs %d.\n", rec.Up, rec.Voters, answeredLine(rec), rec.Quorum)
	fmt.Fprintf(w, "Recovered %s from quorum loss: the fleet's members are now %s.\n", rec.Name, strings.Join(members, ", "))
	fmt.Fprintf(w, "Dropped: %s. Once a survivor leads, it forgets their certificates and the join tokens made before now, and notes it in the witness log.\n", strings.Join(rec.Dropped, ", "))
	fmt.Fprintf(w, "Kept: the replicated state (spec generation %d, certificates, trails, failover state).\n\n", rec.Generation)
	if len(rec.After.Servers) > 1 {
		fmt.Fprintf(w, "Run the same recovery on every other survivor (--survivors %s) before starting them.\n", strings.Join(c.Survivors, ","))
	}
	fmt.Fprintf(w, "Start the agent as usual (without --recover):\n  fleetctl agent --data-dir %s --listen %s\n", c.DataDir, listenHint(c.Listen, string(self)))
	fmt.Fprintf(w, "Then grow the fleet again: 'fleetctl token create', and join new appliances with --join and --token-file.\n")
	return nil
}

// answeredLine names who counted towards a quorum.
func answeredLine(rec *agent.Recovery) string {
	out := []string{rec.Name + " (this agent)"}
	out = append(out, rec.Answered...)
	if len(rec.Answered) == 0 {
		out = append(out, "no other member answered")
	}
	return strings.Join(out, ", ")
}

// listenHint is the --listen to suggest: the one given, else the address
// the fleet records for this agent.
func listenHint(given, recorded string) string {
	if given != "" {
		return given
	}
	return recorded
}
