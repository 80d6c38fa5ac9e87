package reconcile_test

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
)

// TestOrphanReasonAdoptsAsAbsent: an orphan's reason carries the exact
// item to paste under shares:; pasted, the next plan deletes the subvolume
// by the rules of state: absent (refused while it holds nested
// subvolumes). An orphan the spec cannot name as a share (another share
// has its name) gets no item, and says why.
func TestOrphanReasonAdoptsAsAbsent(t *testing.T) {
	shares := `
  - {name: projects, appliance: nas1, pool: tank}
  - {name: elsewhere, appliance: nas2, pool: tank}
`
	d := newDisk(t).subvol("/tank/projects", "/tank/tmp", "/tank/elsewhere", "/tank/deep", "/tank/deep/inner")
	plan := func(shares string) []reconcile.Action {
		spec := mustSpec(t, shares)
		return reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(context.Background(), d, spec, "nas1"), Now: planNow})
	}
	reasons := map[string]string{}
	for _, a := range plan(shares) {
		if a.Kind == reconcile.ActionOrphaned {
			reasons[a.Share] = a.Reason
		}
	}
	want := "not in the spec: kept on disk; to delete it, paste this under shares: and apply:\n  - {name: tmp, appliance: nas1, pool: tank, state: absent}"
	if reasons["tmp"] != want {
		t.Fatalf("tmp: want reason %q, got %q", want, reasons["tmp"])
	}
	if r := reasons["elsewhere"]; !strings.Contains(r, `it cannot be named as a share to delete it (share "elsewhere" is already defined`) || strings.Contains(r, "state: absent}") {
		t.Fatalf("elsewhere: want why it cannot be adopted and no item, got %q", r)
	}
	if r := reasons["deep"]; !strings.Contains(r, "- {name: deep, appliance: nas1, pool: tank, state: absent}") || !strings.Contains(r, "1 nested subvolume(s)") {
		t.Fatalf("deep: want the item and the nested subvolume named, got %q", r)
	}

	// Paste the items exactly as printed.
	pasted := shares
	for _, name := range []string{"tmp", "deep"} {
		_, item, _ := strings.Cut(reasons[name], "\n")
		item, _, _ = strings.Cut(item, "\n")
		pasted += item + "\n"
	}
	got := lines(plan(pasted))
	for _, w := range []string{"- delete share tmp (state: absent, after its final snapshot)", "! blocked share deep"} {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Fatalf("after pasting: want %q in the plan, got %q", w, got)
		}
	}
	if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "delete share deep") }) {
		t.Fatalf("a share holding a nested subvolume must not be deleted: %q", got)
	}
}

// TestLoopReportsOrphanFacts: the report gives each orphan its referenced
// bytes where the pool has quotas (unknown elsewhere) and its creation
// time, asked of the driver once per subvolume.
func TestLoopReportsOrphanFacts(t *testing.T) {
	d := newDisk(t).subvol("/tank/tmp", "/pool2/old")
	d.ok(d.EnableQuota(context.Background(), "/tank"))
	spec := mustSpec(t, "  - {name: projects, appliance: nas1, pool: tank}\n")
	l := &reconcile.Loop{Appliance: "nas1", Driver: d, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return planNow }}
	rep, _ := l.Once(context.Background(), spec, 1)
	if len(rep.OrphanFacts) != 2 || !slices.Equal(rep.Orphans, []string{"tank/tmp", "pool2/old"}) {
		t.Fatalf("want facts of tank/tmp and pool2/old, got %v %+v", rep.Orphans, rep.OrphanFacts)
	}
	tmp, old := rep.OrphanFacts[0], rep.OrphanFacts[1]
	if tmp.Pool != "tank" || tmp.Name != "tmp" || tmp.Referenced == nil || *tmp.Referenced != 16<<10 || tmp.Created.IsZero() {
		t.Fatalf("tank/tmp (quotas on): want 16KiB and a creation time, got %+v", tmp)
	}
	if old.Pool != "pool2" || old.Name != "old" || old.Referenced != nil || old.Created.IsZero() {
		t.Fatalf("pool2/old (quotas off): want unknown size and a creation time, got %+v", old)
	}
	again, _ := l.Once(context.Background(), spec, 1)
	if !reflect.DeepEqual(rep, again) {
		t.Fatalf("a second run over the same disk must report the same: %+v then %+v", rep, again)
	}
}
