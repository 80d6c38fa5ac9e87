package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/preview"
	"github.com/fleetctl/fleetctl/schema"
)

type applyCmd struct {
	clientFlags
	File              string `short:"f" required:"" placeholder:"FILE" help:"The fleet spec to store; - reads standard input."`
	ExpectGeneration  uint64 `placeholder:"N" help:"Store only if the stored spec is still generation N (compare-and-set; 'fleetctl diff' shows it)."`
	outputFlag        `embed:""`
	NoColor           bool          `help:"No colours, even on a terminal."`
	Wait              bool          `help:"After storing, wait until every storage appliance has reconciled the new generation, showing progress."`
	Timeout           time.Duration `default:"2m" help:"How long --wait waits before saying who is behind and why."`
	Approve           []string      `placeholder:"KIND:NAME" help:"Approve a destructive change by name: delete:SHARE, move:SHARE, remove:APPLIANCE, quota:SHARE, witness:failover_after, witness:fence_after; or all. Repeat or separate with commas."`
	RenameFleet       bool          `help:"Store a file whose fleet: name differs from the stored spec's (or, before the first spec, from the CA's). Renames the spec's fleet only: the CA and certificates keep their name."`
	ReplaceAppliances bool          `help:"Store a file that names none of the stored spec's appliances (every one leaves the fleet)."`
}

func (applyCmd) Help() string {
	return `Validates FILE locally, stores it in the fleet through any agent, and
prints the new generation and what changed in the spec. Nothing is sent when
the file is invalid.

With --wait it then follows every storage appliance until it has reconciled
its btrfs to the new generation, and exits 1 naming who is behind and why
when one reports errors or the timeout passes.

A change that loses data, or may, or acts at once needs approval, and the
fleet's leader refuses it without (so does the API for any client):
  delete:SHARE        a share goes to state: absent (its subvolume is deleted)
  move:SHARE          a share moves to another appliance or pool
  remove:APPLIANCE    an appliance that holds shares leaves the spec
  quota:SHARE         a quota below what the share holds now
  witness:FIELD       failover_after or fence_after lowered to at most how long
                      an appliance has been silent now: it acts at once
On a terminal apply shows them and asks (type yes, or the one thing's name);
otherwise it changes nothing, exits 1 and says what to pass: --approve with
each KIND:NAME, or --approve=all for every one of these. A file for another
fleet (its fleet: differs) needs --rename-fleet, and one that names none of
the fleet's appliances --replace-appliances; --approve=all gives neither.

Exit codes: 0 stored (or already stored) and, with --wait, reconciled
everywhere; 1 invalid spec, refused (--expect-generation did not match, a
change not approved) or not reconciled; 2 trouble (unreachable agent, no
leader, a malformed --approve).`
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
	req := client.ApplyRequest{YAML: string(data), ExpectedGeneration: c.ExpectGeneration,
		Approval: schema.Approval{Approve: c.Approve, RenameFleet: c.RenameFleet, ReplaceAppliances: c.ReplaceAppliances}}
	if err := req.Approval.Check(); err != nil {
		return fmt.Errorf("--approve: %w", err)
	}
	res, err := cl.Apply(ctx, req)
	for {
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Code != client.CodeApprovalRequired {
			break
		}
		if err := c.showHazards(e, cl, ctx, name, spec, ae); err != nil {
			return err
		}
		if !interactive(e, c.File) {
			fmt.Fprintf(e.stderr, "%s: refused: %s approval; nothing was changed. To store it, run again with %s\n",
				name, needsApproval(len(ae.Hazards)), approvalFlags(ae.Hazards))
			return exitError(exitFailed)
		}
		if !confirm(e.stdin, e.stderr, ae.Hazards) {
			fmt.Fprintf(e.stderr, "%s: not approved; nothing was changed\n", name)
			return exitError(exitFailed)
		}
		// Approved as shown: against the generation it was found against.
		more := schema.ApprovalFor(ae.Hazards)
		req.Approve = append(req.Approve, more.Approve...)
		req.RenameFleet = req.RenameFleet || more.RenameFleet
		req.ReplaceAppliances = req.ReplaceAppliances || more.ReplaceAppliances
		if req.ExpectedGeneration == 0 {
			req.ExpectedGeneration = ae.Generation
		}
		res, err = cl.Apply(ctx, req)
	}
	if err != nil {
		return refused(e, name, err)
	}
	changes, err := appliedChanges(ctx, cl, spec, res)
	if err != nil {
		return err
	}
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

// appliedChanges is what an apply changed in the spec: as the leader
// diffed it, or else spec against the spec it replaced.
func appliedChanges(ctx context.Context, cl *client.Client, spec *schema.Spec, res *client.ApplyResponse) (schema.Changes, error) {
	if res.Changes != nil {
		return *res.Changes, nil
	}
	var prev *schema.Spec
	if res.Previous != "" {
		var err error
		if prev, err = schema.Parse("stored spec", []byte(res.Previous)); err != nil {
			return nil, fmt.Errorf("the spec it replaced no longer parses: %w", err)
		}
	}
	active, _ := preview.ActiveAppliances(ctx, cl, spec, nil) // without it, the note names the spec's appliance
	return schema.DiffWith(prev, spec, schema.DiffOptions{Active: active}), nil
}

// showHazards prints the spec changes against the stored spec, then each
// change that needs approval with what it does.
func (c *applyCmd) showHazards(e env, cl *client.Client, ctx context.Context, name string, spec *schema.Spec, ae *client.APIError) error {
	if stored, err := cl.Spec(ctx, true); err == nil {
		var prev *schema.Spec
		if stored.YAML != "" {
			prev, _ = schema.Parse("stored spec", []byte(stored.YAML))
		}
		if err := schema.Diff(prev, spec).Render(e.stderr, useColor(e, c.NoColor)); err != nil {
			return err
		}
		fmt.Fprintln(e.stderr)
	}
	fmt.Fprintf(e.stderr, "%s: %s approval:\n", name, needsApproval(len(ae.Hazards)))
	for _, h := range ae.Hazards {
		fmt.Fprintf(e.stderr, "  ! %s\n      %s\n", approvalFlags([]schema.Hazard{h}), h.Reason)
	}
	return nil
}

func needsApproval(n int) string {
	if n == 1 {
		return "1 change needs"
	}
	return fmt.Sprintf("%d changes need", n)
}

// approvalFlags are the flags that approve exactly hs.
func approvalFlags(hs []schema.Hazard) string {
	return schema.ApprovalFor(hs).Flags()
}

// interactive says whether apply may ask: standard input and error are a
// terminal, and the spec is not read from standard input.
func interactive(e env, file string) bool {
	return file != "-" && isTerminal(e.stdin) && isTerminal(e.stderr)
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// confirm asks on out whether to approve hs and reads the answer from in:
// the name of the one thing it is about when there is one, else yes.
func confirm(in io.Reader, out io.Writer, hs []schema.Hazard) bool {
	want := "yes"
	if len(hs) == 1 && hs[0].Name != "" {
		want = hs[0].Name
	}
	return confirmName(in, out, want)
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
	spec, err = parseSpec(e, name, data)
	return name, data, spec, err
}

// parseSpec parses and validates a spec read from name; an invalid one
// prints every problem and is exitFailed.
func parseSpec(e env, name string, data []byte) (*schema.Spec, error) {
	spec, err := schema.Parse(name, data)
	var problems schema.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p)
		}
		fmt.Fprintf(e.stderr, "%s: invalid: %s; nothing was sent\n", name, plural(len(problems), "problem"))
		return nil, exitError(exitFailed)
	}
	return spec, err
}
