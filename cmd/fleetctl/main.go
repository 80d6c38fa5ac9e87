// Command fleetctl runs a fleet of btrfs storage appliances from one
// desired-state file, fleet.yaml.
//
// This package only wires the command line (kong) to the packages that do
// the work: schema decides what a valid fleet.yaml is, agent runs an
// appliance's agent, client talks to the agents' API. Each subcommand lives
// in a file of its own, with its flags and help beside its code.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kong"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitFailed  = 1 // the command ran and the answer is "no" (invalid spec, changes found)
	exitTrouble = 2 // bad usage, unreadable input, unknown name: the command could not answer
)

// cli is the whole command line.
type cli struct {
	Version kong.VersionFlag `help:"Print the version of fleetctl and exit."`

	Validate    validateCmd    `cmd:"" help:"Check a fleet.yaml: every problem, with file:line:col and field path."`
	Diff        diffCmd        `cmd:"" help:"Show what applying a fleet.yaml would change (exit 0 none, 1 some, 2 trouble)."`
	Apply       applyCmd       `cmd:"" help:"Store a fleet.yaml in the fleet through any agent."`
	Status      statusCmd      `cmd:"" help:"Show the fleet's members, leader, health and spec generation."`
	Orphans     orphansCmd     `cmd:"" help:"List orphaned subvolumes fleet-wide (in no share of the spec): size, age, how to delete."`
	Snapshots   snapshotsCmd   `cmd:"" help:"List every copy of a share across the fleet: snapshots, replicated, diverged, set aside."`
	Diverged    divergedCmd    `cmd:"" help:"List, file by file, what a share's old active wrote after its last replication (its diverged snapshots)."`
	Get         getCmd         `cmd:"" help:"Print stored state."`
	Members     membersCmd     `cmd:"" help:"Manage the members of the fleet's Raft group."`
	Replicate   replicateCmd   `cmd:"" help:"Replicate a share now (--now), and follow it (--follow)."`
	Replication replicationCmd `cmd:"" help:"Replication status and trails."`
	Witness     witnessCmd     `cmd:"" help:"The quorum as witness: leases, failovers, fences."`
	Failover    failoverCmd    `cmd:"" help:"Planned switchover of a share to its replica, with no data lost."`
	Restore     restoreCmd     `cmd:"" help:"Restore from a copy of a share: files out to a directory, or the copy as a new share."`
	Drill       drillCmd       `cmd:"" help:"Disaster-recovery drill: a writable clone of a share's replica, a check in it, RPO and RTO."`
	Agent       agentCmd       `cmd:"" help:"Run this appliance's agent."`
	Fence       fenceCmd       `cmd:"" help:"Make the shares a stopped agent was active for read-only (for unit files and operators)."`
	Guard       guardCmd       `cmd:"" hidden:"" help:"The agent's guard process (started by fleetctl agent)."`
	Demo        demoCmd        `cmd:"" help:"Run a fleet on this machine: agents on 127.0.0.1, loop-mounted btrfs pools."`
	UI          uiCmd          `cmd:"" name:"ui" help:"Serve a dashboard of the fleet to a browser on this machine (loopback, login token)."`
	Credential  credentialCmd  `cmd:"" help:"Issue, list and revoke admin credentials."`
	Token       tokenCmd       `cmd:"" help:"Make, list and revoke join tokens."`
	Schema      schemaCmd      `cmd:"" help:"Print the JSON Schema of fleet.yaml, for editors."`
	Completion  completionCmd  `cmd:"" help:"Print a shell completion script: bash, zsh or fish."`
}

const description = `fleetctl runs a fleet of btrfs storage appliances from one desired-state
file, fleet.yaml: which appliances and pools there are, which shares live
where with what quota, their snapshot and replication schedules, and when
the quorum fails a replicated share over to its replica.

Start with:
  fleetctl validate -f fleet.yaml.example --show-defaults
  fleetctl agent --help

Exit codes: 0 success, 1 the answer is no (an invalid file; diff: changes
found), 2 trouble (bad flags, unreadable file, unreachable fleet, a name
the fleet does not know).`

// env is what a command may touch of the outside world; tests give their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// exitError ends the command with a given exit code after it has already
// said what went wrong.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	os.Exit(run(os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

// run parses args, runs the command and returns the process exit code.
func run(args []string, e env) int {
	var c cli
	exited := -1
	parser, err := kong.New(&c,
		kong.Name("fleetctl"),
		kong.Description(description),
		kong.Vars{"version": versionString()},
		kong.Writers(e.stdout, e.stderr),
		kong.Exit(func(code int) {
			exited = code
			panic(exitPanic{})
		}),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
	)
	if err != nil {
		panic(err) // the cli struct itself is wrong: a programming error
	}
	code, ran := parseAndRun(parser, args, e)
	if !ran && exited >= 0 {
		return exited
	}
	return code
}

// exitPanic unwinds kong's Exit (after --help or --version) back to run.
type exitPanic struct{}

func parseAndRun(parser *kong.Kong, args []string, e env) (code int, ran bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(exitPanic); !ok {
				panic(r)
			}
			code, ran = exitOK, false
		}
	}()
	ctx, err := parser.Parse(args)
	if err != nil {
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil {
			_ = pe.Context.PrintUsage(true)
		}
		fmt.Fprintf(e.stderr, "fleetctl: %v\n", err)
		return exitTrouble, true
	}
	if err := ctx.Run(e); err != nil {
		var x exitError
		if errors.As(err, &x) {
			return int(x), true
		}
		fmt.Fprintf(e.stderr, "fleetctl: %v\n", err)
		return exitTrouble, true
	}
	return exitOK, true
}

// outputFlag is the --output flag of every command that prints a result
// a script may read.
type outputFlag struct {
	Output string `short:"o" enum:"text,json" default:"text" help:"Output format: text or json."`
}
