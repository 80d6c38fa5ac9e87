package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/fleetctl/fleetctl/agent"
	"github.com/fleetctl/fleetctl/agent/fence"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/reconcile"
)

type agentCmd struct {
	Name      string `help:"This appliance's name, as fleet.yaml names it. Needed the first time; read from the data dir after." placeholder:"NAME"`
	DataDir   string `name:"data-dir" required:"" env:"FLEETCTL_DATA_DIR" placeholder:"DIR" help:"Where the agent keeps its identity, credentials and Raft state."`
	Listen    string `placeholder:"HOST:PORT" help:"Address to listen on, for Raft and the API (TLS only). Required, except with --recover."`
	Advertise string `placeholder:"HOST:PORT" help:"Address other members reach this agent at (default: --listen)."`
	Bootstrap bool   `help:"Start a new fleet with this agent as its first member (only when the data dir is new)."`
	Fleet     string `default:"fleet" placeholder:"NAME" help:"With --bootstrap: the fleet's name, as fleet.yaml's fleet: gives it. It names the fleet's certificate authority."`
	Join      string `placeholder:"HOST:PORT" help:"Join the fleet through the agent at this address (only when the data dir is new)."`
	Token     string `env:"FLEETCTL_JOIN_TOKEN" placeholder:"TOKEN" help:"The fleet's join token. On the command line it shows in every process list: prefer --token-file, or FLEETCTL_JOIN_TOKEN."`
	TokenFile string `name:"token-file" placeholder:"FILE" help:"File holding the fleet's join token: join-token in the first agent's data dir, or a copy of it (mode 0600). Read only while this agent has not joined yet."`
	LogLevel  string `default:"info" enum:"debug,info,warn,error" help:"Log level: debug, info, warn or error."`
	// MetricsListen is agent.Config.MetricsListen.
	MetricsListen string `name:"metrics-listen" placeholder:"ADDR" help:"Also serve Prometheus metrics (GET /metrics only) in plain HTTP at this loopback address, like 127.0.0.1:9400, for a scraper on this appliance. Off by default; any address other than a loopback one is refused. The TLS port serves GET /metrics to a fleet credential anyway."`

	ReconcileInterval time.Duration `default:"30s" help:"How often to look for drift (a share deleted or a quota changed by hand) when the spec does not change."`
	Btrfs             string        `default:"btrfs" placeholder:"PATH" help:"The btrfs command (btrfs-progs)."`

	// Recover and Survivors recover a stopped agent's fleet from quorum
	// loss (recover.go).
	Recover   bool     `help:"Recover from quorum loss: rewrite the fleet's membership in this stopped agent's data dir to --survivors, then exit (start the agent again without it). Refused while a quorum of the fleet answers."`
	Survivors []string `placeholder:"NAME" help:"With --recover: the members that survive, this one among them (the others are dropped). Run the same recovery on each survivor."`

	// AcceptEmptyRaftDB is the way past agent.ErrRaftDBEmpty.
	AcceptEmptyRaftDB bool `name:"accept-empty-raft-db" help:"Start even though DIR/raft.db is empty in a data dir whose agent was a member: it starts as that member with no Raft term, vote or log, and could vote twice in one term. Without it such an agent refuses to start."`
}

func (agentCmd) Help() string {
	return `Runs this appliance's agent until it is stopped (SIGINT or SIGTERM). The
agents of a fleet form a Raft group that stores the fleet spec; every
connection between them, and from the CLI, is mutually authenticated TLS.

The first agent starts the fleet and makes its certificate authority,
named after --fleet (fleet.yaml's fleet: name), and its join token
(written to DIR/join-token, mode 0600):

  fleetctl agent --name nas1 --data-dir /var/lib/fleetctl --listen 10.0.0.1:7400 \
      --bootstrap --fleet office

Every other agent joins through any member with that token, read from a
copy of that file (--token-file; or FLEETCTL_JOIN_TOKEN, or --token, but
give it one way only, and never in argv, where every user sees it):

  fleetctl agent --name nas2 --data-dir /var/lib/fleetctl --listen 10.0.0.2:7400 \
      --join 10.0.0.1:7400 --token-file /root/join-token

Once joined, the agent needs the token no more: delete the copy.

Each agent keeps its own appliance's btrfs at the stored spec: shares
(subvolumes) on its pools, their quotas, snapshots and retention. It
reconciles on every spec change and every --reconcile-interval, and reports
what it found to the fleet (fleetctl status). It never deletes a share that
the spec merely stopped naming; only state: absent deletes.

Restarted on the same data dir, an agent comes back with its identity and
state; --bootstrap and --join are then ignored. A member whose data dir was
lost is removed with 'fleetctl members remove NAME' and joins again.

When most of the fleet's voters are lost for good (two of three dead), the
fleet has no quorum and can change nothing, not even its members. Stop the
agent of every surviving appliance, and on each run the same recovery,
naming the survivors:

  fleetctl agent --data-dir /var/lib/fleetctl --recover --survivors nas1

It rewrites the fleet's membership in the data dir to the survivors (each
a voter at its recorded address) and exits; the spec, certificates, trails
and failover state are kept. It refuses, exit 2 and nothing changed, while
a quorum of the last membership answers over the fleet's TLS, and when the
survivors are empty, not members, leave out this agent, or are a quorum
themselves. Then start the
agents as usual: once one leads, it forgets the dropped members'
certificates and the join tokens made before the recovery, and notes it in
the witness log. Grow the fleet again with 'fleetctl token create' and
--join.

An agent whose DIR/raft.db is damaged (truncated, garbled) refuses to
start and says so; so does one whose raft.db is empty though it has been
a member, since its term and vote are gone (--accept-empty-raft-db starts
it anyway). Restore the data dir from a backup, or remove the member and
join it again with an empty data dir.

Never two writable copies: a replicated share is writable only on the
appliance the fleet says is active for it, and only while that appliance's
agent vouches for it. The agent starts fenced (its active shares read-only
until it has caught up with the fleet and renewed its lease), fences them
when it stops, and starts a guard process beside itself that fences them if
the agent dies or hangs past its lease. DIR/agent.pid holds the agent's
process ID. 'fleetctl fence' does the same by hand or from a unit file.

Metrics: GET /metrics on the agent's port, over the same mutual TLS, for an
admin credential or a member's agent (Prometheus's scrape config takes the
credential's certificate, key and CA files); and with --metrics-listen
127.0.0.1:PORT, in plain HTTP on loopback only, for a scraper on the
appliance. docs/operations.md lists the metrics.`
}

func (c *agentCmd) Run(e env) error {
	if c.Recover || len(c.Survivors) > 0 {
		return c.runRecover(e)
	}
	if c.Listen == "" {
		return errors.New("missing flags: --listen=HOST:PORT")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	if c.MetricsListen != "" {
		if err := agent.CheckMetricsListen(c.MetricsListen); err != nil {
			return fmt.Errorf("agent: --metrics-listen: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	token, err := c.joinToken()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	lock, err := fence.LockAgent(c.DataDir, 15*time.Second)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer lock.Release()
	// The guard fences this agent's active shares if it dies or hangs;
	// it must run before the agent can make anything writable. It holds
	// the data dir's lock too, so no new agent (nor fleetctl fence) runs
	// while it may still be fencing.
	guard, err := startGuardian(c.DataDir, c.Btrfs, lock.File(), log)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer guard.Stop()
	node, err := agent.Start(ctx, agent.Config{
		Name:      c.Name,
		DataDir:   c.DataDir,
		Listen:    c.Listen,
		Advertise: c.Advertise,
		Bootstrap: c.Bootstrap,
		Fleet:     c.Fleet,
		Join:      c.Join,
		Token:     token,
		Logger:    log,

		AcceptEmptyRaftDB: c.AcceptEmptyRaftDB,
		MetricsListen:     c.MetricsListen,

		Driver:            reconcile.NewBtrfs(c.Btrfs),
		ReconcileInterval: c.ReconcileInterval,
		Guard:             watchdogged(guard),
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	log.Info("agent running", "name", node.Name(), "listen", c.Listen)
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("could not tell systemd the agent is ready", "err", err)
	}
	<-ctx.Done()
	log.Info("stopping")
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	return node.Shutdown()
}

// joinToken returns the join token that --token, FLEETCTL_JOIN_TOKEN or
// --token-file gives, one of them at most. The file is read with
// pki.ReadFile's limit, its trailing white space dropped, and only while
// the data dir has no identity: an agent that has joined needs no token,
// and its copy of the file may be gone.
func (c *agentCmd) joinToken() (string, error) {
	if c.TokenFile == "" {
		return c.Token, nil
	}
	if c.Token != "" {
		return "", errors.New("give the join token one way: --token-file FILE, --token TOKEN or FLEETCTL_JOIN_TOKEN, not two")
	}
	if agent.HasIdentity(c.DataDir) {
		return "", nil
	}
	b, err := pki.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimRightFunc(string(b), unicode.IsSpace)
	if token == "" {
		return "", fmt.Errorf("--token-file %s: the file is empty; it should hold the join token from join-token in the first agent's data dir", c.TokenFile)
	}
	if _, err := pki.ParseToken(token); err != nil {
		return "", fmt.Errorf("--token-file %s: %w", c.TokenFile, err)
	}
	return token, nil
}

// watchdogged is the guard, and under a systemd unit with WatchdogSec
// each heartbeat also pings systemd's watchdog: the beats come from the
// agent's lease loop, so a hung agent stops both, and systemd kills it and
// runs the unit's ExecStopPost (fleetctl fence). The ping is go-systemd's,
// which speaks the notify protocol as systemd documents it.
func watchdogged(g *guardian) agent.Guard {
	if wd, err := daemon.SdWatchdogEnabled(false); err != nil || wd <= 0 {
		return g
	}
	return systemdWatchdog{g}
}

// systemdWatchdog pings systemd's watchdog with every heartbeat.
type systemdWatchdog struct{ *guardian }

func (w systemdWatchdog) Beat(h fence.Heartbeat) {
	w.guardian.Beat(h)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
}
