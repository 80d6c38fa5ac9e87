package main

import (
	"fmt"
	"time"
)

type failoverCmd struct {
	clientFlags
	Share string        `arg:"" help:"The replicated share to move."`
	To    string        `required:"" placeholder:"APPLIANCE" help:"The appliance to make active: the share's replica."`
	Wait  time.Duration `default:"10m" help:"How long to wait for the final replication and the switch."`
}

func (failoverCmd) Help() string {
	return `A planned switchover: moves SHARE to its replica APPLIANCE with no data
lost. The active appliance makes the share read-only (writes to it fail from
then on), sends a final incremental, and only when that has arrived does the
fleet swap the roles (the share's epoch rises). The new active appliance then
makes its copy, identical to the last state of the old one, writable, and
replicates back to the old one, which keeps a read-only copy.

If the final replication fails, nothing is switched and the share is made
writable again on the active appliance.`
}

func (c *failoverCmd) Run(e env) error {
	cl, ctx, done, err := c.session(c.Wait)
	if err != nil {
		return err
	}
	defer done()
	fmt.Fprintf(e.stderr, "Stopping writes to %s and sending a final incremental…\n", c.Share)
	res, err := cl.Failover(ctx, c.Share, c.To)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s is now active on %s (epoch %d); %s holds the final snapshot %s read-only.\n", res.Share, res.To, res.Epoch, res.From, res.Snapshot)
	return nil
}
