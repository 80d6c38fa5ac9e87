package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetctl/fleetctl/raftstore"
	"github.com/fleetctl/fleetctl/schema"
)

type applyCmd struct {
	clientFlags
	File             string `short:"f" required:"" placeholder:"FILE" help:"The fleet spec to store; - reads standard input."`
	ExpectGeneration uint64 `placeholder:"N" help:"Store only if the stored spec is still generation N (compare-and-set; 'fleetctl diff' shows it)."`
	Output           string `short:"o" enum:"text,json" default:"text" help:"Output format: text or json."`
	NoColor          bool   `help:"No colours, even on a terminal."`
}

func (applyCmd) Help() string {
	return `Validates FILE locally, stores it in the fleet through any agent, and
prints the new generation and what changed in the spec. Nothing is sent when
the file is invalid.

Exit codes: 0 stored (or already stored), 1 invalid spec or refused
(--expect-generation did not match), 2 trouble (unreachable agent, no leader).`
}

// applyReport is the --output json form of apply.
type applyReport struct {
	Generation uint64         `json:"generation"`
	Unchanged  bool           `json:"unchanged"`
	Changes    schema.Changes `json:"changes"`
}

func (c *applyCmd) Run(e env) error {
	name, data, spec, err := loadSpec(e, c.File)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cl.Apply(ctx, raftstore.ApplyRequest{YAML: string(data), ExpectedGeneration: c.ExpectGeneration})
	if err != nil {
		return refused(e, name, err)
	}
	var prev *schema.Spec
	if res.Previous != "" {
		if prev, err = schema.Parse("stored spec", []byte(res.Previous)); err != nil {
			return fmt.Errorf("the spec it replaced no longer parses: %w", err)
		}
	}
	changes := schema.Diff(prev, spec)
	if res.Unchanged {
		changes = schema.Changes{}
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, applyReport{Generation: res.Generation, Unchanged: res.Unchanged, Changes: changes})
	}
	if res.Unchanged {
		fmt.Fprintf(e.stdout, "No changes: %s is already stored as generation %d.\n", name, res.Generation)
		return nil
	}
	if err := changes.Render(e.stdout, useColor(e, c.NoColor)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Applied %s as generation %d.\n", name, res.Generation)
	return nil
}

// refused prints why the fleet refused a spec; a refusal exits 1, trouble 2.
func refused(e env, name string, err error) error {
	var ae *raftstore.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case raftstore.CodeInvalidSpec:
		for _, p := range ae.Problems {
			p.File = name
			fmt.Fprintln(e.stderr, p)
		}
		fmt.Fprintf(e.stderr, "%s: refused by the fleet: %s; nothing was changed\n", name, plural(len(ae.Problems), "problem"))
		return exitError(exitFailed)
	case raftstore.CodeConflict:
		fmt.Fprintf(e.stderr, "%s: refused: %s; nothing was changed (run fleetctl diff to see the stored spec)\n", name, ae.Message)
		return exitError(exitFailed)
	}
	return err
}

// loadSpec reads and validates a spec file, printing every problem; an
// invalid spec ends the command with exit code 1.
func loadSpec(e env, file string) (name string, data []byte, spec *schema.Spec, err error) {
	name, data, err = readSpecFile(file, e.stdin)
	if err != nil {
		return name, nil, nil, err
	}
	spec, err = schema.Parse(name, data)
	var problems schema.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p)
		}
		fmt.Fprintf(e.stderr, "%s: invalid: %s; nothing was sent\n", name, plural(len(problems), "problem"))
		return name, nil, nil, exitError(exitFailed)
	}
	return name, data, spec, err
}
