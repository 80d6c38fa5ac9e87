package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"
)

type divergedCmd struct {
	clientFlags
	outputFlag `embed:""`
	Share      string `arg:"" help:"The share whose diverged writes to list."`
	Appliance  string `placeholder:"A" help:"Only the diverged snapshots on this storage appliance."`
}

func (divergedCmd) Help() string {
	return `Lists, file by file, what the old active of a share wrote after its last
replication snapshot: after a failover it keeps those writes as a read-only
diverged snapshot (.fleetctl/diverged/SHARE.STAMP), and this compares each
one with its base, the newest replication snapshot of the share it was
taken after, on the appliance that holds both (btrfs send --no-data from
the base, read by btrfs receive --dump). For each change: the share, the
appliance, the diverged snapshot, added, changed, deleted or renamed (with
the old path), the path in the share, and the size (in the diverged
snapshot; a deleted file's in the base). Directories whose entries changed
are not listed themselves, nor a file that was only read.

A diverged snapshot whose base is gone (a failback prunes the old
replication snapshots) is listed with why it cannot be compared. Every
storage appliance answers for its own pools; one that does not answer in
time is reported after the list. A share the spec does not name and no
appliance holds a diverged copy of exits 2.`
}

func (c *divergedCmd) Run(e env) error {
	cl, ctx, done, err := c.session(60 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Diverged(ctx, c.Share, c.Appliance)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, res)
	}
	if len(res.Diverged) == 0 {
		what := c.Share
		if c.Appliance != "" {
			what += " on " + c.Appliance
		}
		fmt.Fprintf(e.stdout, "No diverged snapshots of %s.\n", what)
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SHARE\tAPPLIANCE\tDIVERGED\tCHANGE\tPATH\tSIZE")
		var failed []string
		for _, d := range res.Diverged {
			snap := filepath.Base(d.Path)
			if d.Error != "" {
				failed = append(failed, fmt.Sprintf("  %s %s: %s", d.Appliance, d.Path, d.Error))
			}
			for _, ch := range d.Changes {
				size := "-"
				if ch.Size != nil {
					size = humanBytes(*ch.Size)
				}
				p := ch.Path
				if ch.Dir {
					p += "/"
				}
				if ch.From != "" {
					p += " (from " + ch.From + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Share, d.Appliance, snap, ch.Kind, p, size)
			}
			if len(d.Changes) == 0 && d.Error == "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Share, d.Appliance, snap, "none", "-", "-")
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(failed) > 0 {
			fmt.Fprintln(e.stdout, "\nNot compared:")
			for _, f := range failed {
				fmt.Fprintln(e.stdout, f)
			}
		}
	}
	if len(res.Errors) > 0 {
		fmt.Fprintln(e.stdout, "\nNot listed in full (their diverged snapshots may be missing above):")
		for _, ae := range res.Errors {
			fmt.Fprintf(e.stdout, "  %s: %s\n", ae.Appliance, ae.Error)
		}
	}
	return nil
}
