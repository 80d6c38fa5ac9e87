package main

import (
	"os"
	"time"

	"github.com/fleetctl/fleetctl/preview"
)

type diffCmd struct {
	clientFlags
	File       string `short:"f" required:"" placeholder:"FILE" help:"The fleet spec to compare with the stored one; - reads standard input."`
	outputFlag `embed:""`
	NoColor    bool `help:"No colours, even on a terminal."`
}

func (diffCmd) Help() string {
	return `Shows what 'fleetctl apply -f FILE' would change, before anything is
touched: first the spec, object by object and field by field, then, appliance
by appliance, the plan its agent would run against its btrfs state now:
+ create, ~ change, - destroy (with the reason), ! report only.

Removing a share from the file never deletes it: it stays on disk and is
reported as orphaned. Only state: absent deletes a share, on the appliance
active for it, right after a read-only final snapshot of it
(.fleetctl/snapshots/SHARE/SHARE.final.STAMP, never pruned).

Exit codes, as diff(1): 0 nothing would change, 1 changes, 2 trouble.`
}

func (c *diffCmd) Run(e env) error {
	_, data, spec, err := loadSpec(e, c.File)
	if err != nil {
		return troubleIfInvalid(err)
	}
	cl, ctx, done, err := c.session(60 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	rep, err := preview.Compute(ctx, cl, data, spec)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		if err := writeJSONOut(e.stdout, rep); err != nil {
			return err
		}
	} else if err := rep.Render(e.stdout, useColor(e, c.NoColor)); err != nil {
		return err
	}
	if rep.Changed() {
		return exitError(exitFailed)
	}
	return nil
}

// troubleIfInvalid maps an invalid spec to diff's exit code 2: for diff, 1
// means "differs".
func troubleIfInvalid(err error) error {
	if x, ok := err.(exitError); ok && x == exitFailed {
		return exitError(exitTrouble)
	}
	return err
}

// useColor reports whether to colour output: only on a terminal, never with
// --no-color or NO_COLOR set.
func useColor(e env, noColor bool) bool {
	if noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := e.stdout.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
