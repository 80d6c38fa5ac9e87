package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

type membersCmd struct {
	Remove membersRemoveCmd `cmd:"" help:"Remove a member from the fleet's Raft group."`
}

type membersRemoveCmd struct {
	clientFlags
	Name  string `arg:"" help:"The member to remove."`
	Force bool   `help:"Remove it even if it answers or holds the writable copy of a share; what that leaves behind is printed."`
}

func (membersRemoveCmd) Help() string {
	return `Removes a member from the fleet's Raft group, for an appliance that is gone
for good or whose data dir was lost (it can then join again with a new join
token: removing a member revokes its certificates and every join token). The
member's shares and data are not touched. The fleet keeps an
odd number of voters (1 of 2 members, 3 of 3 or 4, 5 of 5 or more): the
removal promotes a non-voter or demotes a voter to keep it so.

It refuses, changing nothing, to remove a member that still answers (stop
its agent first: a running member is not lost) or one that holds the
writable copy of a share (switch the share over first; the refusal prints
the fleetctl failover command to run). --force removes it anyway and prints
what that leaves behind.`
}

func (c *membersRemoveCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.RemoveMember(ctx, c.Name, c.Force)
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Code == client.CodeConflict {
		fmt.Fprintf(e.stderr, "fleetctl: %v\n", err)
		return exitError(exitFailed) // refused: nothing changed
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed %s from the fleet\n", c.Name)
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(e.stderr, "%s's certificates are revoked, and so is every join token; make a new one with 'fleetctl token create'\n", c.Name)
	return nil
}
