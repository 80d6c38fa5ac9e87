package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/looppool/looppooltest"
	"github.com/fleetctl/fleetctl/schema"
)

// The final snapshot of the tests' share old, planned at planNow.
const finalOld = "/tank/.fleetctl/snapshots/old/old.final.20261125T123000Z"

// TestPlanDeleteTakesFinalSnapshot: state: absent plans a read-only final
// snapshot of the share, as its own action right before the delete, which
// says where it is; retention never prunes a final snapshot.
func TestPlanDeleteTakesFinalSnapshot(t *testing.T) {
	const hourly = ", snapshots: {schedule: every 1h, retention: 1h, keep_min: 1}}\n"
	tests := []struct {
		name    string
		shares  string
		disk    func(d disk)
		want    []string
		reasons map[int]string
	}{
		{
			name:   "no snapshots: the final one is the only copy",
			shares: "\n  - {name: old, appliance: nas1, pool: tank, state: absent}\n",
			disk:   func(d disk) { d.subvol("/tank/old") },
			want: []string{
				"+ final snapshot of share old (as .fleetctl/snapshots/old/old.final.20261125T123000Z, then delete)",
				"- delete share old (state: absent, after its final snapshot)",
			},
			reasons: map[int]string{
				0: "if it fails, the share is not deleted",
				1: "its final snapshot " + finalOld + " is kept",
			},
		},
		{
			name:   "scheduled snapshots are kept and counted beside the final one",
			shares: "\n  - {name: old, appliance: nas1, pool: tank, state: absent" + hourly,
			disk: func(d disk) {
				d.subvol("/tank/old").snaps("/tank", "old", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
			},
			want: []string{
				"+ final snapshot of share old (as .fleetctl/snapshots/old/old.final.20261125T123000Z, then delete)",
				"- delete share old (state: absent, after its final snapshot)",
			},
			reasons: map[int]string{1: "its 2 snapshots in /tank/.fleetctl/snapshots/old are kept"},
		},
		{
			name:   "a final snapshot the share has not changed since is not taken again",
			shares: "\n  - {name: old, appliance: nas1, pool: tank, state: absent}\n",
			disk: func(d disk) {
				d.subvol("/tank/old")
				d.ok(d.MkdirAll(context.Background(), "/tank/.fleetctl/snapshots/old"))
				d.ok(d.Snapshot(context.Background(), "/tank/old", "/tank/.fleetctl/snapshots/old/old.final.20261125T120000Z", true))
			},
			want:    []string{"- delete share old (state: absent, final snapshot old.final.20261125T120000Z taken already)"},
			reasons: map[int]string{0: "/tank/.fleetctl/snapshots/old/old.final.20261125T120000Z"},
		},
		{
			name:   "a share changed after its final snapshot gets a new one, stamped after it",
			shares: "\n  - {name: old, appliance: nas1, pool: tank, state: absent}\n",
			disk: func(d disk) {
				d.subvol("/tank/old")
				d.ok(d.MkdirAll(context.Background(), "/tank/.fleetctl/snapshots/old"))
				d.ok(d.Snapshot(context.Background(), "/tank/old", finalOld, true))
				d.ok(d.Touch("/tank/old"))
			},
			want: []string{
				"+ final snapshot of share old (as .fleetctl/snapshots/old/old.final.20261125T123001Z, then delete)",
				"- delete share old (state: absent, after its final snapshot)",
			},
			reasons: map[int]string{1: "1 earlier final snapshot"},
		},
		{
			name:   "retention never prunes a final snapshot of a share back in the spec",
			shares: "\n  - {name: old, appliance: nas1, pool: tank" + hourly,
			disk: func(d disk) {
				d.subvol("/tank/old").snaps("/tank", "old", "2026-11-25T12:00:00Z")
				d.ok(d.Snapshot(context.Background(), "/tank/old", "/tank/.fleetctl/snapshots/old/old.final.20261101T000000Z", true))
			},
		},
		{
			name:   "a writable snapshot of the share is not a final snapshot",
			shares: "\n  - {name: old, appliance: nas1, pool: tank, state: absent}\n",
			disk: func(d disk) {
				d.subvol("/tank/old")
				d.ok(d.MkdirAll(context.Background(), "/tank/.fleetctl/snapshots/old"))
				d.ok(d.Snapshot(context.Background(), "/tank/old", "/tank/.fleetctl/snapshots/old/old.final.20261125T120000Z", false))
			},
			want: []string{
				"+ final snapshot of share old (as .fleetctl/snapshots/old/old.final.20261125T123000Z, then delete)",
				"- delete share old (state: absent, after its final snapshot)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDisk(t)
			tt.disk(d)
			spec := mustSpec(t, tt.shares)
			in := reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(context.Background(), d, spec, "nas1"), Now: planNow}
			got := reconcile.Plan(in)
			if g, w := strings.Join(lines(got), "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Fatalf("plan:\n%s\nwant:\n%s", g, w)
			}
			for i, s := range tt.reasons {
				if !strings.Contains(got[i].Reason, s) {
					t.Errorf("reason of %q is %q; want it to say %q", got[i], got[i].Reason, s)
				}
			}
			for i, a := range got {
				if a.Kind == reconcile.ActionDeleteShare {
					if i == 0 && len(tt.want) > 1 || a.Source == "" {
						t.Errorf("%q: no final snapshot before it (source %q)", a, a.Source)
					}
				}
			}
		})
	}
}

// TestPlanDeleteReplicatedAfterSwitchover: a replicated share marked
// absent is deleted where it is active now, after a final snapshot there,
// and the plan says which appliance; the other appliance's copies (its
// demoted share, the received and replication snapshots) stay.
func TestPlanDeleteReplicatedAfterSwitchover(t *testing.T) {
	onNas2 := schema.Activation{Appliance: "nas2", Epoch: 1}
	absent := strings.Replace(failoverShares, "quota: 1GiB", "state: absent", 1)
	plan := func(d disk, appliance string, act schema.Activation) []reconcile.Action {
		t.Helper()
		spec := mustSpec(t, absent)
		var active map[string]schema.Activation
		if act != (schema.Activation{}) {
			active = map[string]schema.Activation{"projects": act}
		}
		return reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: appliance, Observed: reconcile.Observe(context.Background(), d, spec, appliance), Now: planNow, Active: active})
	}

	// nas2 holds the promoted share and what it received.
	nas2 := newDisk(t).received("20261125T100000Z", "sent-1")
	nas2.subvol("/tank/projects")
	got := plan(nas2, "nas2", onNas2)
	want := []string{
		"+ final snapshot of share projects (as .fleetctl/snapshots/projects/projects.final.20261125T123000Z, then delete)",
		"- delete share projects (state: absent, on nas2, active at epoch 1, after its final snapshot)",
	}
	if g, w := strings.Join(lines(got), "\n"), strings.Join(want, "\n"); g != w {
		t.Fatalf("nas2's plan:\n%s\nwant:\n%s", g, w)
	}
	for _, s := range []string{"active on nas2 at epoch 1", "nas1's copies", "received snapshots"} {
		if !strings.Contains(got[1].Reason, s) {
			t.Errorf("delete reason %q does not say %q", got[1].Reason, s)
		}
	}
	for _, r := range reconcile.Execute(context.Background(), nas2, got) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if _, ok := nas2.Lookup("/tank/projects"); ok {
		t.Error("nas2's share was not deleted")
	}
	if sv, ok := nas2.Lookup("/tank/.fleetctl/snapshots/projects/projects.final.20261125T123000Z"); !ok || !sv.ReadOnly {
		t.Errorf("nas2's final snapshot: %+v, %v; want it read-only", sv, ok)
	}
	if _, ok := nas2.Lookup("/tank/.fleetctl/received/projects/projects.20261125T100000Z"); !ok {
		t.Error("nas2's received snapshot is gone")
	}
	if again := plan(nas2, "nas2", onNas2); len(again) != 0 {
		t.Errorf("plan after the delete:\n%s", strings.Join(lines(again), "\n"))
	}

	// nas1, demoted, keeps its copy and its replication snapshots.
	nas1 := newDisk(t)
	nas1.subvol("/tank/projects").replicated("20261125T100000Z")
	got = plan(nas1, "nas1", onNas2)
	if g, w := strings.Join(lines(got), "\n"), "! demoted share projects (epoch 1 active on nas2; kept read-only)"; g != w {
		t.Fatalf("nas1's plan:\n%s\nwant:\n%s", g, w)
	}
	if !strings.Contains(got[0].Reason, "deleted on nas2") {
		t.Errorf("demoted reason %q does not say the share is deleted on nas2", got[0].Reason)
	}

	// Before any failover the spec's appliance deletes and says so.
	nas1 = newDisk(t)
	nas1.subvol("/tank/projects")
	got = plan(nas1, "nas1", schema.Activation{})
	if len(got) != 2 || got[1].String() != "- delete share projects (state: absent, on nas1, active at epoch 0, after its final snapshot)" {
		t.Fatalf("nas1's plan before a failover:\n%s", strings.Join(lines(got), "\n"))
	}
	if !strings.Contains(got[1].Reason, "nas2's copies") {
		t.Errorf("delete reason %q does not say nas2's copies are kept", got[1].Reason)
	}
}

// TestExecuteNoFinalSnapshotNoDelete: when the final snapshot fails, the
// share is not deleted; a delete without a final snapshot is refused.
func TestExecuteNoFinalSnapshotNoDelete(t *testing.T) {
	d := newDisk(t)
	d.subvol("/tank/old")
	d.Fail("Snapshot", finalOld, errors.New("no space left on device"))
	res := planAndExecute(t, d, "\n  - {name: old, appliance: nas1, pool: tank, state: absent}\n")
	var got []string
	for _, r := range res {
		got = append(got, outcome(r))
	}
	want := []string{
		"failed: + final snapshot of share old (as .fleetctl/snapshots/old/old.final.20261125T123000Z, then delete)",
		"skipped: - delete share old (state: absent, after its final snapshot)",
	}
	if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
		t.Fatalf("results:\n%s\nwant:\n%s", g, w)
	}
	if !errors.Is(res[1].Err, reconcile.ErrPrerequisite) {
		t.Errorf("delete: %v; want ErrPrerequisite", res[1].Err)
	}
	if _, ok := d.Lookup("/tank/old"); !ok {
		t.Fatal("the share was deleted although its final snapshot failed")
	}

	// Hand-made plans: a delete must name a read-only final snapshot of
	// the share that exists.
	d.ok(d.MkdirAll(context.Background(), "/tank/.fleetctl/snapshots/old"))
	d.ok(d.Snapshot(context.Background(), "/tank/old", "/tank/.fleetctl/snapshots/old/old.20261125T120000Z", true))
	d.ok(d.Snapshot(context.Background(), "/tank/old", "/tank/.fleetctl/snapshots/old/old.final.20261125T110000Z", false))
	for _, src := range []string{
		"",
		"/tank/.fleetctl/snapshots/old/old.20261125T120000Z",       // not a final snapshot
		"/tank/.fleetctl/snapshots/old/old.final.20261125T100000Z", // missing
		"/tank/.fleetctl/snapshots/old/old.final.20261125T110000Z", // writable
		"/tank/.fleetctl/snapshots/other/other.final.20261125T110000Z",
	} {
		res := reconcile.Execute(context.Background(), d, []reconcile.Action{
			{Kind: reconcile.ActionDeleteShare, Pool: "tank", Share: "old", Path: "/tank/old", Source: src},
		})
		if len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Error, "final snapshot") {
			t.Errorf("delete with final snapshot %q: %v; want it refused for want of a final snapshot", src, res)
		}
	}
	if _, ok := d.Lookup("/tank/old"); !ok {
		t.Fatal("a hand-made delete without a final snapshot deleted the share")
	}
}

// TestDeleteKeepsFinalSnapshotOnRealBtrfs: on a loop-mounted btrfs, a file
// written into a share after its last scheduled snapshot is in the final
// snapshot state: absent takes, the share is gone, and the next plans
// neither take another nor prune it.
func TestDeleteKeepsFinalSnapshotOnRealBtrfs(t *testing.T) {
	pool := looppooltest.ForTest(t, 0)
	ctx := context.Background()
	parse := func(state string) *schema.Spec {
		t.Helper()
		spec, err := schema.Parse("fleet.yaml", []byte(fmt.Sprintf(`version: 1
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: %s}]}
shares:
  - {name: old, appliance: nas1, pool: tank, state: %s, snapshots: {schedule: every 1h, retention: 1h, keep_min: 1}}
`, pool.Path(), state)))
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	b := reconcile.NewBtrfs("")
	reconcileAt := func(spec *schema.Spec, now string) []reconcile.Action {
		t.Helper()
		actions := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, b, spec, "nas1"), Now: mustTime(t, now)})
		for _, r := range reconcile.Execute(ctx, b, actions) {
			if r.Err != nil {
				t.Fatalf("at %s: %v", now, r.Err)
			}
		}
		return actions
	}

	// The share and its first scheduled snapshot, empty; then a file.
	reconcileAt(parse("present"), "2026-11-25T12:00:00Z")
	share := filepath.Join(pool.Path(), "old")
	if err := os.WriteFile(filepath.Join(share, "recent.txt"), []byte("written minutes before\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	absent := parse("absent")
	got := reconcileAt(absent, "2026-11-25T12:05:00Z")
	want := "+ final snapshot of share old (as .fleetctl/snapshots/old/old.final.20261125T120500Z, then delete)\n- delete share old (state: absent, after its final snapshot)"
	if g := strings.Join(lines(got), "\n"); g != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", g, want)
	}
	if _, err := os.Stat(share); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the share is still there: %v", err)
	}
	final := filepath.Join(pool.Path(), ".fleetctl/snapshots/old/old.final.20261125T120500Z")
	data, err := os.ReadFile(filepath.Join(final, "recent.txt"))
	if err != nil || string(data) != "written minutes before\n" {
		t.Fatalf("the final snapshot lacks the recent file: %q, %v", data, err)
	}
	if err := os.WriteFile(filepath.Join(final, "x"), nil, 0o600); err == nil {
		t.Error("the final snapshot is writable")
	}
	if got := reconcileAt(absent, "2026-11-26T12:00:00Z"); len(got) != 0 {
		t.Errorf("plan a day after the delete:\n%s", strings.Join(lines(got), "\n"))
	}

	// Back in the spec: a new empty share; retention keeps the final snapshot.
	reconcileAt(parse("present"), "2026-11-27T12:00:00Z")
	reconcileAt(parse("present"), "2026-11-27T15:00:00Z")
	if _, err := os.Stat(filepath.Join(final, "recent.txt")); err != nil {
		t.Errorf("retention pruned the final snapshot: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pool.Path(), ".fleetctl/snapshots/old/old.20261125T120000Z")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("retention did not prune the old scheduled snapshot: %v", err)
	}
}
