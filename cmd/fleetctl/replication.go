package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/store"
)

type replicationCmd struct {
	Status replicationStatusCmd `cmd:"" help:"Show every replicated share: last success, lag, next run."`
	Trail  replicationTrailCmd  `cmd:"" help:"Show a share's replication attempts, both sides."`
}

type replicationStatusCmd struct {
	clientFlags
	outputFlag `embed:""`
}

func (replicationStatusCmd) Help() string {
	return `Shows every replicated share of the stored spec: where it is sent (from
its active appliance, which a failover changes, and the epoch), the last
successful replication and the snapshot it delivered, the lag (how old
the target's newest copy is), when the schedule runs next, and whether a
run is going on now (bytes so far); then each share's last
disaster-recovery drill (fleetctl drill) with its result, RPO and RTO.`
}

func (c *replicationStatusCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	shares, err := cl.ReplicationStatus(ctx)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, shares)
	}
	if len(shares) == 0 {
		fmt.Fprintln(e.stdout, "No replicated shares in the stored spec.")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARE\tFROM\tTO\tEPOCH\tLAST SUCCESS\tLAG\tNEXT RUN\tNOW")
	for _, s := range shares {
		last, lag := "never", "-"
		if !s.LastSuccess.IsZero() {
			last = s.LastSuccess.Local().Format(time.DateTime)
			if t, err := time.Parse(reconcile.StampFormat, s.LastSnapshot); err == nil {
				lag = now.Sub(t).Round(time.Second).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Share, s.From, s.To, s.Epoch, last, lag, s.NextRun.Local().Format(time.DateTime), sourceNow(s))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range shares {
		if a := s.LastAttempt; a != nil && a.Result != "ok" {
			fmt.Fprintf(e.stdout, "%s: last attempt %s: %s\n", s.Share, a.Result, a.Error)
		}
	}
	for _, s := range shares {
		if d := s.LastDrill; d != nil {
			fmt.Fprintf(e.stdout, "%s: last drill %s\n", s.Share, drillSummary(d))
			if d.Error != "" {
				fmt.Fprintf(e.stdout, "%s: last drill %s: %s\n", s.Share, d.Result, d.Error)
			}
		} else {
			fmt.Fprintf(e.stdout, "%s: no drill recorded (fleetctl drill %s)\n", s.Share, s.Share)
		}
	}
	return nil
}

func sourceNow(s client.ReplicationShare) string {
	switch {
	case s.Source == nil:
		return "? (" + s.SourceError + ")"
	case s.Source.Running:
		return "sending, " + humanBytes(s.Source.Bytes) + " so far"
	}
	return "idle"
}

type replicationTrailCmd struct {
	clientFlags
	Share      string `arg:"" help:"The replicated share."`
	outputFlag `embed:""`
}

func (replicationTrailCmd) Help() string {
	return `Shows every recorded replication attempt of a share, oldest first, as the
sending and the receiving appliance each saw it: start, full or
incremental, the parent it was based on, the snapshot, bytes, throughput,
result and error; the share's disaster-recovery drills (fleetctl drill)
with their RPO and RTO; and restores from its copies (fleetctl restore):
who restored what, from which copy, to where. The store keeps the newest 100 per share.`
}

func (c *replicationTrailCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	trail, err := cl.Trail(ctx, c.Share)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, trail)
	}
	if len(trail) == 0 {
		fmt.Fprintf(e.stdout, "No replication attempts of %s recorded.\n", c.Share)
		return nil
	}
	return printTrail(e.stdout, trail)
}

func printTrail(w io.Writer, trail []store.TrailEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tSIDE\tFROM → TO\tKIND\tPARENT\tSNAPSHOT\tBYTES\tRATE\tRESULT")
	var errs []string
	for _, t := range trail {
		if t.Side == reconcile.SideDrill {
			fmt.Fprintf(tw, "%s\t%s\t%s → %s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Start.Local().Format(time.DateTime), t.Side, t.From, t.To, "-", "-", t.Snapshot, "-", "-", t.Result)
			errs = append(errs, fmt.Sprintf("%s drill: RPO %s, RTO %s%s", t.Start.Local().Format(time.DateTime), drillDuration(t.RPO), drillDuration(t.RTO), checkNote(t.Check)))
			if t.Error != "" {
				errs = append(errs, fmt.Sprintf("%s %s %s: %s", t.Start.Local().Format(time.DateTime), t.Side, t.Result, t.Error))
			}
			continue
		}
		if t.Side == reconcile.SideRestore {
			fmt.Fprintf(tw, "%s\t%s\t%s → %s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Start.Local().Format(time.DateTime), t.Side, t.From, t.To, "-", "-", t.Snapshot, "-", "-", t.Result)
			errs = append(errs, fmt.Sprintf("%s restore %s", t.Start.Local().Format(time.DateTime), t.Note))
			if t.Error != "" {
				errs = append(errs, fmt.Sprintf("%s %s %s: %s", t.Start.Local().Format(time.DateTime), t.Side, t.Result, t.Error))
			}
			continue
		}
		parent := t.Parent
		if parent == "" {
			parent = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s → %s\t%s\t%s\t%s\t%s\t%s/s\t%s\n", t.Start.Local().Format(time.DateTime), t.Side, t.From, t.To, t.Kind, parent, t.Snapshot,
			humanBytes(t.Bytes), humanBytes(int64(t.Throughput())), t.Result)
		if t.Error != "" {
			errs = append(errs, fmt.Sprintf("%s %s %s: %s", t.Start.Local().Format(time.DateTime), t.Side, t.Result, t.Error))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
	return nil
}

type replicateCmd struct {
	clientFlags
	Share  string `arg:"" help:"The replicated share."`
	Now    bool   `help:"Ask for a run that starts after this command: at once, or, when a run is going, as soon as that one ends."`
	Follow bool   `help:"Show progress until the run ends, then its trail entries; exit 1 if it failed. Without --now, follow the run going now."`
}

func (replicateCmd) Help() string {
	return `With --now, asks SHARE's sending appliance for a replication run: a
read-only snapshot, sent full the first time and incrementally after,
received on the target. When no run is going, it starts at once. When
one is going (the schedule's, or another --now), that one is left to
finish and the requested run starts right after it: the run going may
have taken its snapshot before what you want sent was written. Requests
made while one run goes share the next run. It is never an error that a
run is going.

With --follow it shows bytes sent and the rate (and an ETA for a first,
full send, from the share's size) until the run ends, then the trail
entries of both sides, and exits 1 if the run failed. With --now
--follow it follows the run it asked for (after the one going, if any);
with --follow alone, the run going now, and says so when none is.`
}

// followSlice is how long one wait for the run's end lasts before the
// progress line is redrawn; the end itself is reported as it happens.
const followSlice = 500 * time.Millisecond

func (c *replicateCmd) Run(e env) error {
	if !c.Now && !c.Follow {
		return errors.New("say what to do: --now asks for a run, --follow watches the run going (both: ask, then watch)")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	var run *client.RunResponse
	switch {
	case c.Now:
		if run, err = cl.Replicate(ctx, c.Share); err != nil {
			return err
		}
		if run.Running != 0 {
			fmt.Fprintf(e.stderr, "A replication of %s is going (run %d); run %d starts when it ends.\n", c.Share, run.Running, run.Run)
		} else {
			fmt.Fprintf(e.stderr, "Replication of %s started (run %d).\n", c.Share, run.Run)
		}
	default:
		if run, err = cl.CurrentRun(ctx, c.Share); err != nil {
			return err
		}
		if run.Run == 0 {
			fmt.Fprintf(e.stderr, "No replication of %s is going.\n", c.Share)
			return nil
		}
		fmt.Fprintf(e.stderr, "Following run %d of %s.\n", run.Run, c.Share)
	}
	if !c.Follow {
		return nil
	}
	return c.follow(ctx, e, cl, run.Run)
}

// follow shows the progress of run number run until it ends, then prints
// its trail entries (both sides) and fails when it failed.
func (c *replicateCmd) follow(ctx context.Context, e env, cl *client.Client, run uint64) error {
	total := c.fullSize(ctx, cl)
	var last int64
	lastAt := time.Now()
	for {
		w, err := cl.WaitRun(ctx, c.Share, run, followSlice)
		if err != nil {
			return err
		}
		if w.Done && w.Entry != nil {
			fmt.Fprintln(e.stderr)
			if err := printTrail(e.stdout, c.entriesOf(ctx, cl, *w.Entry)); err != nil {
				return err
			}
			if w.Entry.Result != reconcile.ResultOK {
				return exitError(exitFailed)
			}
			return nil
		}
		if p := w.Progress; p != nil {
			now := time.Now()
			rate := float64(p.Bytes-last) / max(now.Sub(lastAt).Seconds(), 0.001)
			if p.Bytes < last {
				rate = 0 // a new run started from zero
			}
			last, lastAt = p.Bytes, now
			fmt.Fprintf(e.stderr, "\r%s", progressLine(p.Bytes, rate, total))
		}
	}
}

// entriesOf returns the trail entries of the attempt sent, both sides, in
// trail order; the sending side's own entry when the trail does not have
// it (recording it failed).
func (c *replicateCmd) entriesOf(ctx context.Context, cl *client.Client, sent store.TrailEntry) []store.TrailEntry {
	trail, err := cl.Trail(ctx, c.Share)
	if err != nil {
		return []store.TrailEntry{sent}
	}
	var out []store.TrailEntry
	hasSend := false
	for _, t := range trail {
		if t.ID == sent.ID && sent.ID != "" {
			out = append(out, t)
			hasSend = hasSend || t.Side == reconcile.SideSend
		}
	}
	if !hasSend {
		out = append(out, sent)
	}
	return out
}

// fullSize is the share's size when the run will be a full send (no
// successful send in the trail yet), for an ETA; 0 when unknown.
func (c *replicateCmd) fullSize(ctx context.Context, cl *client.Client) int64 {
	trail, err := cl.Trail(ctx, c.Share)
	if err != nil {
		return 0
	}
	for _, t := range trail {
		if t.Side == reconcile.SideSend && t.Result == reconcile.ResultOK {
			return 0
		}
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return 0
	}
	for _, a := range st.Appliances {
		for _, s := range a.Shares {
			if s.Name == c.Share {
				return int64(s.Referenced)
			}
		}
	}
	return 0
}

// progressLine is a progress bar when the total is known, else bytes and rate.
func progressLine(done int64, rate float64, total int64) string {
	line := fmt.Sprintf("%s sent, %s/s", humanBytes(done), humanBytes(int64(rate)))
	if total <= 0 {
		return line + "          "
	}
	frac := min(float64(done)/float64(total), 1)
	const width = 30
	bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %3.0f%% %s, ETA %s   ", bar, frac*100, line, eta)
}

// humanBytes writes a byte count with one decimal in binary units: 2.9MiB.
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%dB", max(n, 0))
	}
	v, unit := float64(n), "B"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f%s", v, unit)
}
