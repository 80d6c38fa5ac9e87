package main

import (
	"fmt"
	"text/tabwriter"
	"time"
)

type snapshotsCmd struct {
	clientFlags
	outputFlag `embed:""`
	Share      string `arg:"" optional:"" help:"The share whose copies to list (default: every share's)."`
	Appliance  string `placeholder:"A" help:"Only the copies on this storage appliance."`
}

func (snapshotsCmd) Help() string {
	return `Lists every copy of a share fleetctl keeps across the fleet, to find the
data to get back: scheduled snapshots, the final snapshot of a deleted
share and the state an in-place restore replaced (before-restore), all in
.fleetctl/snapshots/SHARE/; replication snapshots on the sending
appliance (.fleetctl/replication/SHARE/), received copies on the target
(.fleetctl/received/SHARE/), a demoted share's diverged writes
(.fleetctl/diverged/) and the copy a failback set aside beside the share
(SHARE.before-epoch-N).

For each: the share, kind, when it was taken (UTC, from its name; a
before-epoch copy's creation time), the appliance and pool, its size (the
bytes it refers to and holds alone, where the pool has quotas), whether it
is read-only, and the path to browse it on its appliance. Sorted by share,
then time. Every storage appliance answers for its own pools; one that
does not answer in time is reported after the list, and the rest is
listed. A share the spec does not name and no appliance holds a copy of
exits 2.`
}

func (c *snapshotsCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Snapshots(ctx, c.Share, c.Appliance)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, res)
	}
	if len(res.Copies) == 0 {
		what := "any share"
		if c.Share != "" {
			what = c.Share
		}
		if c.Appliance != "" {
			what += " on " + c.Appliance
		}
		fmt.Fprintf(e.stdout, "No copies of %s.\n", what)
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SHARE\tKIND\tTIME\tAPPLIANCE\tPOOL\tREFERENCED\tEXCLUSIVE\tRO\tPATH")
		for _, cp := range res.Copies {
			when, ref, excl, ro := "unknown", "-", "-", "no"
			if cp.Time != nil {
				when = cp.Time.UTC().Format("2006-01-02 15:04:05Z")
			}
			if cp.Referenced != nil {
				ref = humanBytes(int64(*cp.Referenced))
			}
			if cp.Exclusive != nil {
				excl = humanBytes(int64(*cp.Exclusive))
			}
			if cp.ReadOnly {
				ro = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cp.Share, cp.Kind, when, cp.Appliance, cp.Pool, ref, excl, ro, cp.Path)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(res.Errors) > 0 {
		fmt.Fprintln(e.stdout, "\nNot listed in full (their copies may be missing above):")
		for _, ae := range res.Errors {
			fmt.Fprintf(e.stdout, "  %s: %s\n", ae.Appliance, ae.Error)
		}
	}
	return nil
}
