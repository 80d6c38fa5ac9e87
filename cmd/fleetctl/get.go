package main

import (
	"fmt"
	"time"
)

type getCmd struct {
	Spec getSpecCmd `cmd:"" help:"Print the stored fleet spec (YAML, as applied)."`
}

type getSpecCmd struct {
	clientFlags
	Stale  bool   `help:"Answer from the agent's own copy instead of asking the leader (works without a quorum)."`
	Output string `short:"o" enum:"yaml,json" default:"yaml" help:"Output format: yaml (the file as applied) or json (with generation and who applied it)."`
}

func (getSpecCmd) Help() string {
	return `Prints the fleet spec stored in the fleet, exactly as it was applied.
By default the answer is linearizable: the leader confirms it still leads
before answering. --stale reads the agent's own copy, which works without a
quorum but may lag.`
}

func (c *getSpecCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	s, err := cl.Spec(ctx, !c.Stale)
	if err != nil {
		return err
	}
	if s.Generation == 0 {
		// Not found, as every read command's unknown thing: trouble.
		fmt.Fprintln(e.stderr, "no spec has been applied yet; fleetctl apply -f fleet.yaml stores one")
		return exitError(exitTrouble)
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, s)
	}
	fmt.Fprintf(e.stderr, "# generation %d, applied %s by %s\n", s.Generation, s.AppliedAt.Format(time.RFC3339), s.AppliedBy)
	_, err = fmt.Fprint(e.stdout, s.YAML)
	return err
}
