package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/schema"
)

type applyCmd struct {
	clientFlags
	File             string `short:"f" required:"" placeholder:"FILE" help:"The fleet spec to store; - reads standard input."`
	ExpectGeneration uint64 `placeholder:"N" help:"Store only if the stored spec is still generation N (compare-and-set; 'fleetctl diff' shows it)."`
	outputFlag       `embed:""`
	NoColor          bool          `help:"No colours, even on a terminal."`
	Wait             bool          `help:"After storing, wait until every storage appliance has reconciled the new generation, showing progress."`
	Timeout          time.Duration `default:"2m" help:"How long --wait waits before saying who is behind and why."`
}

func (applyCmd) Help() string {
	return `Validates FILE locally, stores it in the fleet through any agent, and
prints the new generation and what changed in the spec. Nothing is sent when
the file is invalid.

With --wait it then follows every storage appliance until it has reconciled
its btrfs to the new generation, and exits 1 naming who is behind and why
when one reports errors or the timeout passes.

Exit codes: 0 stored (or already stored) and, with --wait, reconciled
everywhere; 1 invalid spec, refused (--expect-generation did not match) or
not reconciled; 2 trouble (unreachable agent, no leader).`
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
	cl, ctx, done, err := c.session(60 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Apply(ctx, client.ApplyRequest{YAML: string(data), ExpectedGeneration: c.ExpectGeneration})
	if err != nil {
		return refused(e, name, err)
	}
	var prev *schema.Spec
	if res.Previous != "" {
		if prev, err = schema.Parse("stored spec", []byte(res.Previous)); err != nil {
			return fmt.Errorf("the spec it replaced no longer parses: %w", err)
		}
	}
	active, _ := activeAppliances(ctx, cl, spec, nil) // without it, the note names the spec's appliance
	changes := schema.DiffWith(prev, spec, schema.DiffOptions{Active: active})
	if res.Unchanged {
		changes = schema.Changes{}
	}
	if c.Output == "json" {
		if err := writeJSONOut(e.stdout, applyReport{Generation: res.Generation, Unchanged: res.Unchanged, Changes: changes}); err != nil {
			return err
		}
	} else if res.Unchanged {
		fmt.Fprintf(e.stdout, "No changes: %s is already stored as generation %d.\n", name, res.Generation)
	} else {
		if err := changes.Render(e.stdout, useColor(e, c.NoColor)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Applied %s as generation %d.\n", name, res.Generation)
	}
	if !c.Wait {
		return nil
	}
	return waitReconciled(e, cl, res.Generation, c.Timeout)
}

// waitReconciled follows the storage appliances' reports until each has
// reconciled generation gen, printing a line as each gets there. It fails
// naming who is behind and why when one reports errors at gen or the
// timeout passes.
func waitReconciled(e env, cl *client.Client, gen uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	done := map[string]bool{}
	fmt.Fprintf(e.stderr, "Waiting for the appliances to reconcile generation %d…\n", gen)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := cl.Status(ctx)
		cancel()
		if err == nil && st.AppliancesGeneration < gen {
			// The agent that answered has not applied gen yet.
			err = fmt.Errorf("the agent that answered is still at generation %d", st.AppliancesGeneration)
		}
		if err == nil {
			var behind, failed []string
			for _, a := range st.Appliances {
				switch {
				case a.Reported && a.ObservedGeneration >= gen && a.Converged:
					if !done[a.Name] {
						done[a.Name] = true
						fmt.Fprintf(e.stderr, "  %s: reconciled (%s)\n", a.Name, plural(len(a.Shares), "share"))
					}
				case a.Reported && a.ObservedGeneration >= gen:
					failed = append(failed, fmt.Sprintf("%s: %s", a.Name, strings.Join(a.Errors, "; ")))
				case !a.Reported:
					behind = append(behind, a.Name+": has not reported yet (is its agent running?)")
				default:
					behind = append(behind, fmt.Sprintf("%s: still at generation %d", a.Name, a.ObservedGeneration))
				}
			}
			if len(failed) > 0 {
				for _, f := range failed {
					fmt.Fprintf(e.stderr, "  %s\n", f)
				}
				fmt.Fprintf(e.stderr, "generation %d is stored, but %s could not reconcile it (see above); fix the cause and the agents retry on their own\n", gen, plural(len(failed), "appliance"))
				return exitError(exitFailed)
			}
			if len(behind) == 0 {
				fmt.Fprintf(e.stderr, "Every appliance has reconciled generation %d.\n", gen)
				return nil
			}
			if time.Now().After(deadline) {
				for _, b := range behind {
					fmt.Fprintf(e.stderr, "  %s\n", b)
				}
				fmt.Fprintf(e.stderr, "generation %d is stored, but not every appliance reconciled it within %v\n", gen, timeout)
				return exitError(exitFailed)
			}
		} else if time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// refused prints why the fleet refused a spec; a refusal exits 1, trouble 2.
func refused(e env, name string, err error) error {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case client.CodeInvalidSpec:
		for _, p := range ae.Problems {
			p.File = name
			fmt.Fprintln(e.stderr, p)
		}
		fmt.Fprintf(e.stderr, "%s: refused by the fleet: %s; nothing was changed\n", name, plural(len(ae.Problems), "problem"))
		return exitError(exitFailed)
	case client.CodeConflict:
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
