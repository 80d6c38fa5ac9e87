package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

type restoreCmd struct {
	clientFlags
	Share      string `arg:"" help:"The share whose copy to restore from."`
	From       string `required:"" placeholder:"SNAPSHOT" help:"The copy: its path or name as fleetctl snapshots SHARE prints it."`
	Path       string `placeholder:"P" help:"The file or directory in the snapshot to copy out (relative to it; default: everything). With --to."`
	To         string `placeholder:"DIR" help:"The directory on the snapshot's appliance to copy to; it must not exist or be empty."`
	As         string `placeholder:"NEWSHARE" help:"Make a new writable subvolume <pool>/NEWSHARE of the snapshot on its appliance."`
	DryRun     bool   `help:"Print the plan and change nothing."`
	outputFlag `embed:""`
}

func (restoreCmd) Help() string {
	return `Gets data back from a copy of SHARE that fleetctl snapshots lists, on the
appliance that holds it (the request goes there, wherever fleetctl runs):

  fleetctl restore projects --from projects.20261125T084600Z --path docs/report.txt --to /srv/restore
      copies docs/report.txt out of the snapshot to /srv/restore/report.txt
      with cp --reflink=auto -a; DIR must not exist or be empty, and the path
      must stay inside the snapshot (no .., no symbolic link out of it).
  fleetctl restore projects --from projects.20261125T084600Z --as projects-old
      makes <pool>/projects-old, a writable snapshot of the copy in its pool.
      The spec does not change: the YAML item to add under shares: is
      printed; the new subvolume becomes a share when you apply it.

The plan is printed first; --dry-run prints only the plan. The snapshot and
the share are never changed. Only an admin credential may restore; the
restore (who, what, when) is recorded in the share's trail (fleetctl
replication trail SHARE). An unknown share or snapshot, a snapshot of
another share, a path out of the snapshot or a target that exists exits 2
and changes nothing; a restore that fails on the appliance exits 1 (and is
recorded as failed).`
}

func (c *restoreCmd) Run(e env) error {
	switch {
	case c.As != "" && (c.Path != "" || c.To != ""):
		return fmt.Errorf("--as makes a new share of the whole snapshot; it takes no --path or --to")
	case c.As == "" && c.To == "":
		return fmt.Errorf("say what to restore: --path P --to DIR copies files out, --as NEWSHARE makes a new share of the snapshot")
	}
	cl, ctx, done, err := c.session(time.Hour)
	if err != nil {
		return err
	}
	defer done()
	req := client.RestoreRequest{Share: c.Share, From: c.From, Path: c.Path, To: c.To, As: c.As, DryRun: true}
	plan, err := cl.Restore(ctx, req)
	if err != nil {
		return err
	}
	if c.DryRun {
		if c.Output == "json" {
			return writeJSONOut(e.stdout, plan)
		}
		printRestorePlan(e, plan, true)
		return nil
	}
	if c.Output != "json" {
		printRestorePlan(e, plan, false)
	}
	req.DryRun = false
	res, err := cl.Restore(ctx, req)
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Code == client.CodeInternal {
		// Checked and begun, then failed on the appliance: exit 1.
		fmt.Fprintf(e.stderr, "fleetctl: %v\n", err)
		return exitError(exitFailed)
	}
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, res)
	}
	if len(res.Copied) > 0 {
		fmt.Fprintf(e.stdout, "Copied to %s on %s:\n", c.To, res.Copy.Appliance)
		for _, p := range res.Copied {
			fmt.Fprintf(e.stdout, "  %s\n", p)
		}
		if res.Truncated {
			fmt.Fprintln(e.stdout, "  … (more)")
		}
	}
	if res.NewShare != "" {
		fmt.Fprintf(e.stdout, "Made %s on %s, writable.\n", res.NewShare, res.Copy.Appliance)
		fmt.Fprintf(e.stdout, "The spec is unchanged. To make %s a share, add this under shares: in fleet.yaml and apply it:\n\n%s", c.As, res.YAML)
	}
	fmt.Fprintf(e.stdout, "Recorded in the trail of %s (fleetctl replication trail %s).\n", c.Share, c.Share)
	return nil
}

func printRestorePlan(e env, res *client.RestoreResponse, dry bool) {
	head := "Plan:"
	if dry {
		head = "Plan (dry run, nothing changed):"
	}
	fmt.Fprintln(e.stdout, head)
	for _, s := range res.Plan {
		fmt.Fprintf(e.stdout, "  %s\n", s)
	}
	if dry && res.YAML != "" {
		fmt.Fprintf(e.stdout, "The item to add under shares: in fleet.yaml then:\n\n%s", res.YAML)
	}
}
