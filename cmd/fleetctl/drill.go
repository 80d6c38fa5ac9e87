package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/store"
)

type drillCmd struct {
	clientFlags
	Share      string        `arg:"" help:"The replicated share."`
	Check      string        `placeholder:"CMD" help:"A shell command to run in the clone (as the replica's agent's user, with the clone as working directory and FLEETCTL_DRILL_DIR naming it); the drill fails when it fails."`
	Timeout    time.Duration `default:"10m" help:"How long the check may run (at most 1h); it is killed then and the drill fails."`
	outputFlag `embed:""`
}

func (drillCmd) Help() string {
	return `A disaster-recovery drill: proves that SHARE's replica can take over, and
measures how much would be lost and how long it takes. On the appliance
that receives SHARE, its agent makes a writable clone of the newest
received snapshot as <pool>/.fleetctl/drill/SHARE.<stamp> (the received
snapshot and the share itself are not touched), runs --check in it, and
removes the clone again, also when the check fails or runs out of time.
A clone an agent left behind (it died during a drill) is removed when it
starts again, or by the share's next drill.

The drill is recorded in the share's trail with its RPO (how old the
newest replicated data was: the drill's start minus the received
snapshot's stamp) and RTO (the time from the request reaching the replica
to a writable clone); replication status shows each share's last drill.

The check runs as the agent's user (root) on the replica: only an admin
credential may ask for a drill. Its output (the last 64 KiB) is printed.

  fleetctl drill projects --check 'sha256sum -c /root/projects.sha256'

Exit 0 when the drill passed, 1 when the clone or the check failed, 2 for
a share that is unknown, not replicated or has nothing received yet
(nothing is changed then).`
}

func (c *drillCmd) Run(e env) error {
	if c.Timeout <= 0 || c.Timeout > reconcile.MaxCheckTimeout {
		return fmt.Errorf("--timeout %s: want more than 0 and at most %s", c.Timeout, reconcile.MaxCheckTimeout)
	}
	cl, ctx, done, err := c.session(c.Timeout + 5*time.Minute)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Drill(ctx, client.DrillRequest{Share: c.Share, Check: c.Check, Timeout: c.Timeout.String()})
	if err != nil {
		return err
	}
	if c.Output == "json" {
		if err := writeJSONOut(e.stdout, res); err != nil {
			return err
		}
	} else {
		printDrill(e, res)
	}
	if res.Entry.Result != reconcile.ResultOK {
		return exitError(exitFailed)
	}
	return nil
}

func printDrill(e env, res *client.DrillResponse) {
	d := res.Entry
	w := e.stdout
	fmt.Fprintf(w, "Drill of %s on %s (pool %s, replica of %s): %s\n", d.Share, res.Appliance, res.Pool, d.From, d.Result)
	fmt.Fprintf(w, "  snapshot  %s, the newest received; its data was %s old when the drill started (RPO)\n", d.Snapshot, drillDuration(d.RPO))
	switch {
	case res.Clone == "":
		fmt.Fprintln(w, "  clone     none made")
	case res.Removed:
		fmt.Fprintf(w, "  clone     %s, writable %s after the request (RTO), removed\n", res.Clone, drillDuration(d.RTO))
	default:
		fmt.Fprintf(w, "  clone     %s, writable %s after the request (RTO), NOT removed (the agent removes it at its next start or the next drill)\n", res.Clone, drillDuration(d.RTO))
	}
	switch {
	case d.Check == "":
		fmt.Fprintln(w, "  check     none (--check CMD runs one in the clone)")
	case res.CheckError != "":
		fmt.Fprintf(w, "  check     %s: FAILED (%s)\n", d.Check, res.CheckError)
	case res.Clone != "":
		fmt.Fprintf(w, "  check     %s: passed\n", d.Check)
	}
	if d.Error != "" {
		fmt.Fprintf(w, "  error     %s\n", d.Error)
	}
	if res.Output != "" {
		fmt.Fprintln(w, "Check output:")
		if res.Truncated {
			fmt.Fprintln(w, "(… earlier output dropped: the last 64 KiB follow)")
		}
		fmt.Fprint(w, res.Output)
		if !strings.HasSuffix(res.Output, "\n") {
			fmt.Fprintln(w)
		}
	}
}

// drillDuration writes an RPO or RTO to the precision that matters:
// microseconds under a millisecond, milliseconds under a second, tenths of seconds under a minute, seconds
// beyond.
func drillDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// drillSummary is a trail entry of a drill in one line: when, result,
// RPO, RTO.
func drillSummary(d *store.TrailEntry) string {
	s := fmt.Sprintf("%s %s on %s, RPO %s, RTO %s", d.Start.Local().Format(time.DateTime), d.Result, d.To, drillDuration(d.RPO), drillDuration(d.RTO))
	return s + checkNote(d.Check)
}

// quoteCheck shows a check command in one line, shortened when long.
func quoteCheck(c string) string {
	c = strings.Join(strings.Fields(c), " ")
	if r := []rune(c); len(r) > 60 {
		c = string(r[:57]) + "…"
	}
	return "'" + c + "'"
}

// checkNote is ", check '…'" for a drill that ran one, else "".
func checkNote(c string) string {
	if c == "" {
		return ""
	}
	return ", check " + quoteCheck(c)
}
