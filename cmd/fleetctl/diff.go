package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
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

// diffReport is the --output json form of diff.
type diffReport struct {
	StoredGeneration uint64                 `json:"stored_generation"`
	Changes          schema.Changes         `json:"changes"`
	Appliances       []client.AppliancePlan `json:"appliances"`
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
	plan, err := cl.Plan(ctx, string(data))
	if err != nil {
		return err
	}
	active, err := activeAppliances(ctx, cl, spec, plan.Appliances)
	if err != nil {
		return err
	}
	rep := diffReport{StoredGeneration: stored.Generation, Changes: schema.DiffWith(old, spec, schema.DiffOptions{Active: active}), Appliances: plan.Appliances}
	if c.Output == "json" {
		if err := writeJSONOut(e.stdout, rep); err != nil {
			return err
		}
	} else if err := renderDiff(e.stdout, rep, useColor(e, c.NoColor)); err != nil {
		return err
	}
	if len(rep.Changes) > 0 || planChanges(plan.Appliances) > 0 {
		return exitError(exitFailed)
	}
	return nil
}

// activeAppliances is, by share, the appliance that holds the writable
// copy of each replicated share spec marks absent, so that the spec
// changes say where it is deleted: after a failover or switchover, the
// replica's appliance, not the spec's. The fleet's failover state says
// which; an appliance whose plan deletes the share says so last, since
// that is what its agent will do. Nil when no replicated share is absent
// (the fleet is not asked).
func activeAppliances(ctx context.Context, cl *client.Client, spec *schema.Spec, plans []client.AppliancePlan) (map[string]string, error) {
	need := false
	for _, sh := range spec.Shares {
		need = need || sh.State == schema.StateAbsent && sh.Replication != nil
	}
	if !need {
		return nil, nil
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading which appliance holds each share, to say where it is deleted: %w", err)
	}
	active := map[string]string{}
	for _, f := range st.Shares {
		active[f.Share] = f.Active
	}
	for _, p := range plans {
		for _, a := range p.Actions {
			if a.Kind == reconcile.ActionDeleteShare {
				active[a.Share] = p.Appliance
			}
		}
	}
	return active, nil
}

// planChanges counts the actions that would change something.
func planChanges(plans []client.AppliancePlan) int {
	n := 0
	for _, p := range plans {
		for _, a := range p.Actions {
			if !a.ReportOnly {
				n++
			}
		}
	}
	return n
}

const (
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiRed     = "\x1b[31m"
	ansiMagenta = "\x1b[35m"
	ansiBold    = "\x1b[1m"
	ansiReset   = "\x1b[0m"
)

// renderDiff writes the spec changes, then each appliance's plan, then one
// summary line for the plans.
func renderDiff(w io.Writer, rep diffReport, color bool) error {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	fmt.Fprintln(w, paint(ansiBold, "Spec changes:"))
	if err := rep.Changes.Render(w, color); err != nil {
		return err
	}
	var add, change, destroy, report int
	for _, p := range rep.Appliances {
		fmt.Fprintf(w, "\n%s\n", paint(ansiBold, "Appliance "+p.Appliance+":"))
		if p.Error != "" {
			fmt.Fprintf(w, "  %s\n", paint(ansiMagenta, "? unknown: "+p.Error))
			report++
			continue
		}
		if len(p.Actions) == 0 {
			fmt.Fprintln(w, "  No changes.")
			continue
		}
		for _, a := range p.Actions {
			code := ansiMagenta
			switch a.Symbol() {
			case "+":
				code = ansiGreen
				add++
			case "~":
				code = ansiYellow
				change++
			case "-":
				code = ansiRed
				destroy++
			default:
				report++
			}
			fmt.Fprintf(w, "  %s\n", paint(code, a.String()))
			// Every destructive or report-only line says why.
			if a.Symbol() == "-" || a.ReportOnly {
				fmt.Fprintf(w, "      %s\n", indent(a.Reason, "      "))
			}
		}
	}
	if len(rep.Appliances) > 0 {
		line := fmt.Sprintf("\nPlan: %d to add, %d to change, %d to destroy", add, change, destroy)
		if report > 0 {
			line += fmt.Sprintf("; %d to look at", report)
		}
		fmt.Fprintln(w, line+".")
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
