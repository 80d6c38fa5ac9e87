package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

type diffCmd struct {
	clientFlags
	File    string `short:"f" required:"" placeholder:"FILE" help:"The fleet spec to compare with the stored one; - reads standard input."`
	Output  string `short:"o" enum:"text,json" default:"text" help:"Output format: text or json."`
	NoColor bool   `help:"No colours, even on a terminal."`
}

func (diffCmd) Help() string {
	return `Shows what 'fleetctl apply -f FILE' would change in the stored spec, object
by object and field by field: + added, ~ changed, - removed, and a summary
line. Nothing is changed. The stored spec is read from the leader.

Removing a share from the file never deletes it: it stays on disk and is
reported as orphaned. Only state: absent deletes a share.

Exit codes, as diff(1): 0 no changes, 1 changes, 2 trouble.`
}

// diffReport is the --output json form of diff.
type diffReport struct {
	StoredGeneration uint64         `json:"stored_generation"`
	Changes          schema.Changes `json:"changes"`
}

func (c *diffCmd) Run(e env) error {
	_, _, spec, err := loadSpec(e, c.File)
	if err != nil {
		return troubleIfInvalid(err)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored, err := cl.Spec(ctx, true)
	if err != nil {
		return err
	}
	var old *schema.Spec
	if stored.Generation > 0 {
		if old, err = schema.Parse("stored spec", []byte(stored.YAML)); err != nil {
			return fmt.Errorf("the stored spec no longer parses: %w", err)
		}
	}
	changes := schema.Diff(old, spec)
	if changes == nil {
		changes = schema.Changes{}
	}
	if c.Output == "json" {
		if err := writeJSONOut(e.stdout, diffReport{StoredGeneration: stored.Generation, Changes: changes}); err != nil {
			return err
		}
	} else if err := changes.Render(e.stdout, useColor(e, c.NoColor)); err != nil {
		return err
	}
	if len(changes) > 0 {
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
