// Package preview computes and renders what applying a fleet.yaml would
// change: the spec changes, object by object, then the plan each storage
// appliance's agent would run against its btrfs state now. fleetctl diff
// prints it and the dashboard (package ui) shows it; both take it from
// here so that they can never disagree.
package preview

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// Report is a preview: the --output json form of fleetctl diff.
type Report struct {
	StoredGeneration uint64                 `json:"stored_generation"`
	Changes          schema.Changes         `json:"changes"`
	Appliances       []client.AppliancePlan `json:"appliances"`
}

// Fleet is what a preview asks the fleet: the stored spec, the agents'
// plans for a spec, and the status (which appliance is active for each
// replicated share). *client.Client implements it.
type Fleet interface {
	StatusReader
	Spec(ctx context.Context, consistent bool) (*client.SpecResponse, error)
	Plan(ctx context.Context, yaml string) (*client.PlanResponse, error)
}

// StatusReader reads the fleet's status.
type StatusReader interface {
	Status(ctx context.Context) (*client.Status, error)
}

// Compute previews spec (parsed from data) against the stored spec and
// the appliances' btrfs state.
func Compute(ctx context.Context, f Fleet, data []byte, spec *schema.Spec) (Report, error) {
	stored, err := f.Spec(ctx, true)
	if err != nil {
		return Report{}, err
	}
	var old *schema.Spec
	if stored.Generation > 0 {
		if old, err = schema.Parse("stored spec", []byte(stored.YAML)); err != nil {
			return Report{}, fmt.Errorf("the stored spec no longer parses: %w", err)
		}
	}
	plan, err := f.Plan(ctx, string(data))
	if err != nil {
		return Report{}, err
	}
	active, err := ActiveAppliances(ctx, f, spec, plan.Appliances)
	if err != nil {
		return Report{}, err
	}
	return Report{StoredGeneration: stored.Generation, Changes: schema.DiffWith(old, spec, schema.DiffOptions{Active: active}), Appliances: plan.Appliances}, nil
}

// Changed reports whether applying the spec would change anything: in
// the spec, or on an appliance.
func (r Report) Changed() bool {
	return len(r.Changes) > 0 || PlanChanges(r.Appliances) > 0
}

// ActiveAppliances is, by share, the appliance that holds the writable
// copy of each replicated share spec marks absent, so that the spec
// changes say where it is deleted: after a failover or switchover, the
// replica's appliance, not the spec's. The fleet's failover state says
// which; an appliance whose plan deletes the share says so last, since
// that is what its agent will do. Nil when no replicated share is absent
// (the fleet is not asked).
func ActiveAppliances(ctx context.Context, f StatusReader, spec *schema.Spec, plans []client.AppliancePlan) (map[string]string, error) {
	if !schema.DiffNeedsActive(spec) {
		return nil, nil
	}
	st, err := f.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading which appliance holds each share, to say where it is deleted: %w", err)
	}
	active := map[string]string{}
	for _, sh := range st.Shares {
		active[sh.Share] = sh.Active
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

// PlanChanges counts the actions that would change something.
func PlanChanges(plans []client.AppliancePlan) int {
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

// Render writes the spec changes, then each appliance's plan, then one
// summary line for the plans; with color, in ANSI colours.
func (r Report) Render(w io.Writer, color bool) error {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	fmt.Fprintln(w, paint(ansiBold, "Spec changes:"))
	if err := r.Changes.Render(w, color); err != nil {
		return err
	}
	var add, change, destroy, report int
	for _, p := range r.Appliances {
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
				fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(a.Reason, "\n", "\n      "))
			}
		}
	}
	if len(r.Appliances) > 0 {
		line := fmt.Sprintf("\nPlan: %d to add, %d to change, %d to destroy", add, change, destroy)
		if report > 0 {
			line += fmt.Sprintf("; %d to look at", report)
		}
		fmt.Fprintln(w, line+".")
	}
	return nil
}
