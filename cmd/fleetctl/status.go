package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

type statusCmd struct {
	clientFlags
	outputFlag `embed:""`
	Wait       time.Duration `placeholder:"DURATION" help:"Wait up to DURATION until every member is healthy and at the leader's generation; exit 1 if they are not by then."`
}

func (statusCmd) Help() string {
	return `Shows the fleet's members as the agent sees them: voter or not, the
leader, address, round-trip time, last contact with the leader, the spec
generation each has applied, and health. Any agent answers.

Then each storage appliance's reconciler: the generation its btrfs was last
reconciled to, whether it converged, its shares, orphaned subvolumes (kept
on disk, never deleted) and errors.

With --wait the command retries until the whole fleet is healthy and
caught up (exit 0) or the time is up (exit 1, showing who is not).`
}

func (c *statusCmd) Run(e env) error {
	st, err := c.status()
	if err != nil {
		return err
	}
	if err := c.print(e, st); err != nil {
		return err
	}
	if c.Wait > 0 && !converged(st) {
		fmt.Fprintf(e.stderr, "not every member is healthy and at generation %d after %v\n", st.Generation, c.Wait)
		return exitError(exitFailed)
	}
	return nil
}

// status asks once, or with --wait until the fleet has converged or the
// time is up (an agent still starting counts as not converged); it returns
// the last answer or error.
func (c *statusCmd) status() (*client.Status, error) {
	deadline := time.Now().Add(c.Wait)
	for {
		st, err := c.statusOnce()
		if c.Wait == 0 || (err == nil && converged(st)) || time.Now().After(deadline) {
			return st, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (c *statusCmd) statusOnce() (*client.Status, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cl.Status(ctx)
}

// converged reports whether there is a leader and every member is healthy
// and at the leader's generation.
func converged(st *client.Status) bool {
	if st.Leader == "" {
		return false
	}
	for _, m := range st.Members {
		if m.Health != client.HealthHealthy || m.Generation != st.Generation {
			return false
		}
	}
	for _, a := range st.Appliances {
		if applianceState(a, st.Generation) != "converged" {
			return false
		}
	}
	return true
}

func (c *statusCmd) print(e env, st *client.Status) error {
	if c.Output == "json" {
		return writeJSONOut(e.stdout, st)
	}
	leader := st.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(e.stdout, "Fleet spec generation %d, leader %s (answered by %s)\n\n", st.Generation, leader, st.Node)
	for _, w := range st.Warnings {
		fmt.Fprintf(e.stdout, "WARNING: %s\n", w)
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintln(e.stdout)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tADDRESS\tRTT\tLAST CONTACT\tGENERATION\tHEALTH")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, memberRole(m), m.Address, rtt(m), lastContact(m), generation(m), health(m))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Appliances) == 0 {
		return nil
	}
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APPLIANCE\tRECONCILED\tSTATE\tSHARES\tORPHANS\tREPORTED")
	for _, a := range st.Appliances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", a.Name, reconciled(a), applianceState(a, st.Generation), len(a.Shares), len(a.Orphans), reported(a))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Shares) > 0 {
		fmt.Fprintln(e.stdout)
		if err := printShareFailover(e, st.Shares); err != nil {
			return err
		}
	}
	for _, a := range st.Appliances {
		for _, msg := range a.Errors {
			fmt.Fprintf(e.stdout, "%s: %s\n", a.Name, msg)
		}
		for _, o := range a.Orphans {
			fmt.Fprintf(e.stdout, "%s: orphaned %s (not in the spec: kept on disk)%s\n", a.Name, o, orphanHint(st.Orphans, a.Name, o))
		}
	}
	return nil
}

func memberRole(m client.Member) string {
	role := "nonvoter"
	if m.Voter {
		role = "voter"
	}
	if m.Leader {
		role = "leader"
	}
	return role
}

func rtt(m client.Member) string {
	if !m.Reachable {
		return "-"
	}
	return fmt.Sprintf("%.1fms", m.RTTMillis)
}

func lastContact(m client.Member) string {
	switch {
	case !m.Reachable:
		return "-"
	case m.Leader:
		return "(leader)"
	case m.LastContactMS < 0:
		return "never"
	}
	return (time.Duration(m.LastContactMS) * time.Millisecond).String() + " ago"
}

func generation(m client.Member) string {
	if !m.Reachable {
		return "-"
	}
	return fmt.Sprint(m.Generation)
}

func health(m client.Member) string {
	if m.Error != "" {
		return m.Health + " (" + m.Error + ")"
	}
	return m.Health
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func reconciled(a client.ApplianceStatus) string {
	if !a.Reported {
		return "-"
	}
	return fmt.Sprintf("generation %d", a.ObservedGeneration)
}

// applianceState says how far an appliance is from the stored spec.
func applianceState(a client.ApplianceStatus, gen uint64) string {
	switch {
	case !a.Reported:
		return "not reported"
	case len(a.Errors) > 0:
		return fmt.Sprintf("errors (%d)", len(a.Errors))
	case a.ObservedGeneration < gen:
		return "behind"
	case !a.Converged:
		return "converging"
	}
	return "converged"
}

func reported(a client.ApplianceStatus) string {
	if !a.Reported {
		return "-"
	}
	return a.ReportedAt.Format(time.RFC3339)
}
