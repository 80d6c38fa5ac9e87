package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

// orphanHint is what status adds after an orphan's line: how to delete it
// through the spec, with the item to paste under shares: on a line of its
// own, or why it cannot be; empty when the agent did not say (an older
// agent).
func orphanHint(orphans []client.Orphan, appliance, poolName string) string {
	pool, name, _ := strings.Cut(poolName, "/")
	for _, o := range orphans {
		if o.Appliance != appliance || o.Pool != pool || o.Name != name {
			continue
		}
		if o.Adopt != "" {
			return "; to delete it, paste this under shares: and apply:\n  " + o.Adopt
		}
		if o.Note != "" {
			return "; " + o.Note
		}
	}
	return ""
}

type orphansCmd struct {
	clientFlags
	outputFlag `embed:""`
}

func (orphansCmd) Help() string {
	return `Lists every orphaned subvolume of the fleet: a subvolume at the top of a
storage appliance's pool that no share of the stored spec names (a share
dropped from the file, or one made by hand). Orphans are kept on disk and
reported, never deleted by fleetctl on its own.

For each: the appliance, pool and subvolume, its size (the bytes it
refers to, known only where the pool has quotas enabled), its age (from
the subvolume's creation time), and the item to paste under shares: to
delete it through the spec (state: absent), or why it cannot be. Any agent
answers, from its copy of what the appliances last reported.`
}

func (c *orphansCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Orphans(ctx)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, res)
	}
	if len(res.Orphans) == 0 {
		fmt.Fprintln(e.stdout, "No orphaned subvolumes.")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APPLIANCE\tPOOL\tSUBVOLUME\tSIZE\tAGE\tCREATED")
	for _, o := range res.Orphans {
		size, age, created := "unknown", "unknown", "unknown"
		if o.Referenced != nil {
			size = humanBytes(int64(*o.Referenced))
		}
		if o.Created != nil {
			age = humanAge(res.At.Sub(*o.Created))
			created = o.Created.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Appliance, o.Pool, o.Name, size, age, created)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, o := range res.Orphans {
		fmt.Fprintf(e.stdout, "\n%s: %s/%s%s\n", o.Appliance, o.Pool, o.Name, orphanHint(res.Orphans, o.Appliance, o.Pool+"/"+o.Name))
	}
	return nil
}

// humanAge writes a duration the way people say an age: 42s, 5m, 3h12m,
// 12d3h.
func humanAge(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
