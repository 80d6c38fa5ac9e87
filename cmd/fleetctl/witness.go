package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

type witnessCmd struct {
	Status witnessStatusCmd `cmd:"" help:"Show the leader's view: leases, latency, and where each replicated share is active."`
	Log    witnessLogCmd    `cmd:"" help:"Show the witness log: reachability changes, fences, failovers and why."`
}

type witnessStatusCmd struct {
	clientFlags
	outputFlag `embed:""`
}

func (witnessStatusCmd) Help() string {
	return `Shows the witness as the Raft leader sees it: the policy, each appliance's
lease (how long since its last renewal, its round-trip time, reachable or
degraded), and for every replicated share its active appliance, epoch,
failover mode and whether an appliance has fenced it (made it read-only
because it lost contact with the quorum).`
}

func (c *witnessStatusCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	ws, err := cl.WitnessStatus(ctx)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, ws)
	}
	fmt.Fprintf(e.stdout, "Leader %s since %s; fence after %v, fail over after %v, degraded above %v\n\n",
		ws.Leader, ws.LeaderSince.Local().Format(time.DateTime), ms(ws.Policy.FenceAfterMS), ms(ws.Policy.FailoverAfterMS), ms(ws.Policy.DegradedLatencyMS))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APPLIANCE\tROLE\tLAST RENEWAL\tRTT\tSTATE")
	for _, m := range ws.Members {
		renewal := "-"
		if m.Lease && m.LastRenewalMS >= 0 {
			renewal = (time.Duration(m.LastRenewalMS) * time.Millisecond).String() + " ago"
		}
		state := "reachable"
		switch {
		case !m.Reachable:
			state = "unreachable"
		case m.Degraded:
			state = "degraded"
		}
		if m.Error != "" {
			state += " (" + m.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fms\t%s\n", m.Name, m.Role, renewal, m.RTTMillis, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ws.Shares) > 0 {
		fmt.Fprintln(e.stdout)
		if err := printShareFailover(e, ws.Shares); err != nil {
			return err
		}
	}
	return nil
}

// printShareFailover is the table of replicated shares: where each is
// active, its epoch, mode and fences.
func printShareFailover(e env, shares []client.ShareFailover) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARE\tACTIVE\tREPLICA\tEPOCH\tFAILOVER\tFENCED")
	for _, s := range shares {
		fenced := "no"
		if s.Fenced {
			fenced = "yes, on " + strings.Join(s.FencedOn, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Share, s.Active, s.Replica, s.Epoch, s.Failover, fenced)
	}
	return tw.Flush()
}

type witnessLogCmd struct {
	clientFlags
	outputFlag `embed:""`
}

func (witnessLogCmd) Help() string {
	return `Shows the witness log, oldest first: an appliance becoming unreachable or
reachable again, degraded or recovered, fencing itself or unfencing, and
every failover with the numbers that decided it. Entries are written only
on a change, so an idle fleet adds none. The newest 200 are kept.`
}

func (c *witnessLogCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	log, err := cl.WitnessLog(ctx)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, log)
	}
	if len(log) == 0 {
		fmt.Fprintln(e.stdout, "The witness log is empty.")
		return nil
	}
	for _, ev := range log {
		about := ev.Member
		if ev.Share != "" {
			about += " " + ev.Share
		}
		fmt.Fprintf(e.stdout, "%s  %-12s %s: %s\n", ev.At.Local().Format(time.DateTime), ev.Event, about, ev.Detail)
	}
	return nil
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
