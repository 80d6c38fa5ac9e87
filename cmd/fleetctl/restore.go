package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

type restoreCmd struct {
	clientFlags
	Share      string   `arg:"" help:"The share whose copy to restore from."`
	From       string   `required:"" placeholder:"SNAPSHOT" help:"The copy: its path or name as fleetctl snapshots SHARE prints it."`
	Path       string   `placeholder:"P" help:"The file or directory in the snapshot to copy out (relative to it; default: everything). With --to."`
	To         string   `placeholder:"DIR" help:"The directory on the snapshot's appliance to copy to; it must not exist or be empty."`
	As         string   `placeholder:"NEWSHARE" help:"Make a new writable subvolume <pool>/NEWSHARE of the snapshot on its appliance."`
	On         string   `placeholder:"APPLIANCE" help:"With --as or --to: make the new share, or copy the files, on this storage appliance instead of the copy's (sent there over the agents' mutual TLS)."`
	Pool       string   `placeholder:"POOL" help:"With --as --on: the pool there (default: its only pool, or the share's pool there)."`
	InPlace    bool     `help:"Make SHARE itself a writable snapshot of the copy, its current state kept as a read-only before-restore snapshot. Needs --approve=restore:SHARE (or a yes on a terminal)."`
	Approve    []string `placeholder:"restore:SHARE" help:"Approve an in-place restore: restore:SHARE, or all."`
	DryRun     bool     `help:"Print the plan and change nothing."`
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
  fleetctl restore projects --from projects.20261125T084600Z --as projects-old --on nas3 [--pool tank]
      the same on another storage appliance: the copy is sent there in
      full (btrfs send over mutual TLS, agent to agent) and the new
      subvolume made of what arrived; a partial receive is deleted.
  fleetctl restore projects --from projects.20261125T101500Z --path docs/a.txt --to /srv/tank/projects/recovered --on nas2
      files of a copy on one appliance (here a diverged copy on the old
      active) into a new directory on another (here inside the share's
      active copy), as a tar stream extracted so nothing lands outside DIR.

  fleetctl restore projects --from projects.20261125T084600Z --in-place --approve=restore:projects
      on the appliance active for projects (the copy must be there, in the
      share's pool): keeps the share as it is now as the read-only snapshot
      .fleetctl/snapshots/projects/projects.before-restore.STAMP, then
      makes projects a writable snapshot of the copy. A replicated share's
      replica follows at once, incrementally from a snapshot both hold (the
      plan names it, or says IN FULL when there is none); follow it with
      fleetctl replicate projects --follow.

The plan is printed first; --dry-run prints only the plan. The snapshot is
never changed, and only --in-place changes the share. An in-place restore
needs a yes: --approve=restore:SHARE, or typing the share's name when
asked on a terminal; without it nothing changes and the command exits 1.
Only an admin credential may restore; the restore (who, what, when) is
recorded in the share's trail (fleetctl replication trail SHARE) and in the
witness log (fleetctl witness log). An unknown share or snapshot, a
snapshot of another share, a path out of the snapshot or a target that
exists exits 2 and changes nothing; a restore that fails on the appliance
exits 1 (and is recorded as failed).`
}

func (c *restoreCmd) Run(e env) error {
	switch {
	case c.InPlace && (c.As != "" || c.Path != "" || c.To != ""):
		return fmt.Errorf("--in-place restores the whole share from the snapshot; it takes no --as, --path or --to")
	case c.As != "" && (c.Path != "" || c.To != ""):
		return fmt.Errorf("--as makes a new share of the whole snapshot; it takes no --path or --to")
	case c.As == "" && c.To == "" && !c.InPlace:
		return fmt.Errorf("say what to restore: --path P --to DIR copies files out, --as NEWSHARE makes a new share of the snapshot, --in-place makes the share the snapshot again")
	case c.Pool != "" && c.As == "":
		return fmt.Errorf("--pool says where --as makes the new share; it needs --as")
	case c.On != "" && c.As == "" && c.To == "":
		return fmt.Errorf("--on says where --as makes the new share or --to copies files; it needs one of them")
	case len(c.Approve) > 0 && !c.InPlace:
		return fmt.Errorf("--approve is for --in-place; the other restores change no existing data")
	}
	var approve []string
	for _, a := range c.Approve {
		for _, part := range strings.Split(a, ",") {
			if part = strings.TrimSpace(part); part != "all" && !strings.HasPrefix(part, "restore:") {
				return fmt.Errorf("--approve %q: want restore:SHARE or all", part)
			}
			approve = append(approve, strings.TrimSpace(part))
		}
	}
	cl, ctx, done, err := c.session(time.Hour)
	if err != nil {
		return err
	}
	defer done()
	req := client.RestoreRequest{Share: c.Share, From: c.From, Path: c.Path, To: c.To, As: c.As, InPlace: c.InPlace, Approve: approve, On: c.On, Pool: c.Pool, DryRun: true}
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
	if c.InPlace && !client.ApprovesInPlace(approve, c.Share) {
		if !isTerminal(e.stdin) || !isTerminal(e.stderr) {
			fmt.Fprintf(e.stderr, "fleetctl: an in-place restore replaces the current state of %s (kept as the read-only snapshot %s); nothing was changed. To go ahead: --approve=restore:%s\n", c.Share, plan.Before, c.Share)
			return exitError(exitFailed)
		}
		fmt.Fprintf(e.stderr, "This replaces the current state of %s (kept as the read-only snapshot %s).\n", c.Share, plan.Before)
		if !confirmName(e.stdin, e.stderr, c.Share) {
			fmt.Fprintf(e.stderr, "%s: not approved; nothing was changed\n", c.Share)
			return exitError(exitFailed)
		}
		req.Approve = append(req.Approve, client.InPlaceApproval(c.Share))
	}
	req.DryRun = false
	res, err := cl.Restore(ctx, req)
	if err == nil && res.Ticket != "" {
		// The appliance named by --on is ready for the copy: now its
		// holder sends it.
		req.Ticket = res.Ticket
		res, err = cl.Restore(ctx, req)
	}
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Code == client.CodeApprovalRequired {
		fmt.Fprintf(e.stderr, "fleetctl: %v\n", err)
		return exitError(exitFailed)
	}
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
		where := res.Copy.Appliance
		if c.On != "" {
			where = c.On
		}
		fmt.Fprintf(e.stdout, "Copied to %s on %s:\n", c.To, where)
		for _, p := range res.Copied {
			fmt.Fprintf(e.stdout, "  %s\n", p)
		}
		if res.Truncated {
			fmt.Fprintln(e.stdout, "  … (more)")
		}
	}
	if res.NewShare != "" {
		where := res.Copy.Appliance
		if c.On != "" {
			where = c.On
			fmt.Fprintf(e.stdout, "Sent %s from %s to %s (%s).\n", res.Copy.Path, res.Copy.Appliance, c.On, humanBytes(res.Bytes))
		}
		fmt.Fprintf(e.stdout, "Made %s on %s, writable.\n", res.NewShare, where)
		fmt.Fprintf(e.stdout, "The spec is unchanged. To make %s a share, add this under shares: in fleet.yaml and apply it:\n\n%s", c.As, res.YAML)
	}
	if res.Before != "" {
		fmt.Fprintf(e.stdout, "Restored %s on %s in place from %s.\n", res.Share, res.Copy.Appliance, res.Copy.Path)
		fmt.Fprintf(e.stdout, "Its state from before is the read-only snapshot %s.\n", res.Before)
	}
	if res.Run > 0 {
		fmt.Fprintf(e.stdout, "The replica follows now (run %d): fleetctl replicate %s --follow shows it.\n", res.Run, c.Share)
	} else if res.Follow != "" && res.Before != "" {
		fmt.Fprintf(e.stdout, "%s.\n", res.Follow)
	}
	fmt.Fprintf(e.stdout, "Recorded in the trail of %s (fleetctl replication trail %s) and the witness log.\n", c.Share, c.Share)
	return nil
}

// confirmName asks on out to type name and reads the answer from in.
func confirmName(in io.Reader, out io.Writer, name string) bool {
	fmt.Fprintf(out, "Type %s to approve, anything else to stop: ", name)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(out)
		return false
	}
	return strings.TrimSpace(line) == name
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
