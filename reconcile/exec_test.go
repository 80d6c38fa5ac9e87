package reconcile_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/looppool/looppooltest"
	"github.com/fleetctl/fleetctl/reconcile/reconciletest"
	"github.com/fleetctl/fleetctl/schema"
)

// outcome writes a result as "ok|failed|skipped: <action>".
func outcome(r reconcile.Result) string {
	switch {
	case r.Skipped:
		return "skipped: " + r.Action.String()
	case r.Err != nil:
		return "failed: " + r.Action.String()
	}
	return "ok: " + r.Action.String()
}

func planAndExecute(t *testing.T, d disk, shares string) []reconcile.Result {
	t.Helper()
	ctx := context.Background()
	spec := mustSpec(t, shares)
	actions := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, d, spec, "nas1"), Now: planNow})
	return reconcile.Execute(ctx, d, actions)
}

func TestExecute(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name   string
		shares string
		disk   func(d disk)
		want   []string
		gone   []string // subvolumes that must not exist afterwards
		kept   []string // subvolumes that must still exist
	}{
		{
			name: "all succeed",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, quota: 1GiB, snapshots: {schedule: every 1h, retention: 1h}}
  - {name: old, appliance: nas1, pool: tank, state: absent}
`,
			disk: func(d disk) { d.subvol("/tank/old", "/tank/stray") },
			want: []string{
				"ok: ~ enable quotas on pool tank (needed by projects)",
				"ok: + create share projects (quota 1GiB)",
				"ok: ~ quota projects none → 1GiB",
				"ok: + directory .fleetctl/snapshots/projects on pool tank",
				"ok: + snapshot projects (every 1h, first)",
				"ok: + final snapshot of share old (as .fleetctl/snapshots/old/old.final.20261125T123000Z, then delete)",
				"ok: - delete share old (state: absent, after its final snapshot)",
				// the orphan is report-only: no result
			},
			gone: []string{"/tank/old"},
			kept: []string{"/tank/stray", "/tank/projects", "/tank/.fleetctl/snapshots/projects/projects.20261125T123000Z", "/tank/.fleetctl/snapshots/old/old.final.20261125T123000Z"},
		},
		{
			name: "a failed create skips its quota and snapshot, not the other share",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, quota: 1GiB, snapshots: {schedule: every 1h, retention: 1h}}
  - {name: other, appliance: nas1, pool: tank, quota: 1GiB}
`,
			disk: func(d disk) { d.Fail("CreateSubvolume", "/tank/projects", errBoom) },
			want: []string{
				"ok: ~ enable quotas on pool tank (needed by projects, other)",
				"failed: + create share projects (quota 1GiB)",
				"ok: + create share other (quota 1GiB)",
				"skipped: ~ quota projects none → 1GiB",
				"ok: ~ quota other none → 1GiB",
				"ok: + directory .fleetctl/snapshots/projects on pool tank",
				"skipped: + snapshot projects (every 1h, first)",
			},
			kept: []string{"/tank/other"},
		},
		{
			name: "failed quota enabling skips setting quotas only",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, quota: 1GiB}
`,
			disk: func(d disk) { d.Fail("EnableQuota", "/tank", errBoom) },
			want: []string{
				"failed: ~ enable quotas on pool tank (needed by projects)",
				"ok: + create share projects (quota 1GiB)",
				"skipped: ~ quota projects none → 1GiB",
			},
			kept: []string{"/tank/projects"},
		},
		{
			name: "no directory, no snapshot, no pruning",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, snapshots: {schedule: every 1h, retention: 1h}}
`,
			disk: func(d disk) {
				d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z")
				d.Fail("MkdirAll", "/tank/.fleetctl/snapshots/projects", errBoom)
			},
			want: []string{
				"failed: + directory .fleetctl/snapshots/projects on pool tank",
				"skipped: + snapshot projects (every 1h, last 1h ago)",
				"skipped: - prune snapshot projects.20261125T100000Z (retention 1h)",
			},
			kept: []string{"/tank/.fleetctl/snapshots/projects/projects.20261125T100000Z"},
		},
		{
			name: "a failed snapshot keeps the snapshots it would have replaced",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, snapshots: {schedule: every 1h, retention: 1h}}
`,
			disk: func(d disk) {
				d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z")
				d.Fail("Snapshot", "/tank/projects", errBoom)
			},
			want: []string{
				"ok: + directory .fleetctl/snapshots/projects on pool tank",
				"failed: + snapshot projects (every 1h, last 1h ago)",
				"skipped: - prune snapshot projects.20261125T100000Z (retention 1h)",
			},
			kept: []string{"/tank/.fleetctl/snapshots/projects/projects.20261125T100000Z"},
		},
		{
			name: "a plain directory in the share's place fails the create",
			shares: `
  - {name: projects, appliance: nas1, pool: tank}
`,
			disk: func(d disk) { d.ok(d.MkdirAll(context.Background(), "/tank/projects")) },
			want: []string{"failed: + create share projects"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDisk(t)
			if tt.disk != nil {
				tt.disk(d)
			}
			results := planAndExecute(t, d, tt.shares)
			var got []string
			for _, r := range results {
				got = append(got, outcome(r))
				if (r.Err == nil) != (r.Error == "") {
					t.Errorf("%s: Err %v but Error %q", outcome(r), r.Err, r.Error)
				}
				if r.Skipped && !errors.Is(r.Err, reconcile.ErrPrerequisite) {
					t.Errorf("%s: skipped with %v; want ErrPrerequisite", outcome(r), r.Err)
				}
			}
			if g, w := strings.Join(got, "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Fatalf("results:\n%s\nwant:\n%s", g, w)
			}
			for _, p := range tt.gone {
				if _, ok := d.Lookup(p); ok {
					t.Errorf("%s still exists", p)
				}
			}
			for _, p := range tt.kept {
				if _, ok := d.Lookup(p); !ok {
					t.Errorf("%s does not exist", p)
				}
			}
		})
	}
}

func TestExecuteErrorsSayWhatAndWhy(t *testing.T) {
	d := newDisk(t)
	d.Fail("CreateSubvolume", "/tank/projects", errors.New("boom"))
	res := planAndExecute(t, d, `
  - {name: projects, appliance: nas1, pool: tank, quota: 1GiB}
`)
	if len(res) != 3 {
		t.Fatalf("results: %v", res)
	}
	if want := "create-share projects on tank: create subvolume /tank/projects: boom"; res[1].Error != want {
		t.Errorf("create error %q; want %q", res[1].Error, want)
	}
	if want := "set-quota projects on tank: not run: a step it depends on failed: create-share projects on tank failed"; res[2].Error != want {
		t.Errorf("skip error %q; want %q", res[2].Error, want)
	}
	b, err := json.Marshal(res[2])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"error":"set-quota projects on tank: not run`) || !strings.Contains(string(b), `"skipped":true`) {
		t.Errorf("JSON %s lacks the error", b)
	}
}

// cancelling cancels the context after its first CreateSubvolume.
type cancelling struct {
	*reconciletest.FakeDriver
	cancel context.CancelFunc
}

func (c cancelling) CreateSubvolume(ctx context.Context, path string) error {
	defer c.cancel()
	return c.FakeDriver.CreateSubvolume(ctx, path)
}

func TestExecuteStopsWhenCancelled(t *testing.T) {
	d := newDisk(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := mustSpec(t, `
  - {name: a, appliance: nas1, pool: tank}
  - {name: b, appliance: nas1, pool: tank}
  - {name: c, appliance: nas1, pool: tank}
`)
	actions := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, d, spec, "nas1"), Now: planNow})
	res := reconcile.Execute(ctx, cancelling{d.FakeDriver, cancel}, actions)
	if len(res) != 3 || res[0].Err != nil {
		t.Fatalf("results: %v", res)
	}
	for _, r := range res[1:] {
		if !r.Skipped || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("%s: %v; want skipped, cancelled", outcome(r), r.Err)
		}
	}
	if got := d.Log(); len(got) != 1 || got[0] != "CreateSubvolume /tank/a" {
		t.Errorf("driver calls %q; want only the first create", got)
	}
}

func TestExecuteRefusesBadActions(t *testing.T) {
	d := newDisk(t)
	d.subvol("/tank/projects")
	res := reconcile.Execute(context.Background(), d, []reconcile.Action{
		{Kind: reconcile.ActionPruneSnapshot, Pool: "tank", Share: "projects", Path: "/tank/projects"},
		{Kind: reconcile.ActionSetQuota, Pool: "tank", Share: "projects", Path: "/tank/projects"},
		{Kind: "format-disk", Pool: "tank", Path: "/tank"},
		{Kind: reconcile.ActionOrphaned, Pool: "tank", Share: "projects", Path: "/tank/projects", ReportOnly: true},
	})
	if len(res) != 3 {
		t.Fatalf("%d results; want 3 (reports are not executed)", len(res))
	}
	for _, r := range res {
		if r.Err == nil {
			t.Errorf("%s succeeded", fmt.Sprint(r.Action))
		}
	}
	if n := d.Mutations(); n != 1 {
		t.Errorf("%d mutations; want only the setup's", n)
	}
}

// TestReconcileOnRealBtrfs runs the plan, execute, observe, plan loop on a
// loop-mounted btrfs filesystem with the real driver: what the planner and
// the fake agree on, btrfs must agree on too.
func TestReconcileOnRealBtrfs(t *testing.T) {
	pool := looppooltest.ForTest(t, 0)
	ctx := context.Background()
	spec, err := schema.Parse("fleet.yaml", []byte(fmt.Sprintf(`version: 1
appliances:
  - name: nas1
    address: nas1.example:7400
    pools:
      - {name: tank, path: %s}
shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 64MiB, snapshots: {schedule: every 1h, retention: 1h}}
  - {name: plain, appliance: nas1, pool: tank}
  - {name: old, appliance: nas1, pool: tank, state: absent}
`, pool.Path())))
	if err != nil {
		t.Fatal(err)
	}
	b := reconcile.NewBtrfs("")
	for _, p := range []string{"old", "stray"} {
		if err := b.CreateSubvolume(ctx, filepath.Join(pool.Path(), p)); err != nil {
			t.Fatal(err)
		}
	}

	reconcileAt := func(now time.Time) []reconcile.Action {
		t.Helper()
		actions := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, b, spec, "nas1"), Now: now})
		for _, r := range reconcile.Execute(ctx, b, actions) {
			if r.Err != nil {
				t.Fatalf("at %s: %v", now.Format(time.TimeOnly), r.Err)
			}
		}
		return actions
	}
	check := func(now time.Time, want ...string) {
		t.Helper()
		got := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, b, spec, "nas1"), Now: now})
		if g, w := strings.Join(lines(got), "\n"), strings.Join(want, "\n"); g != w {
			t.Fatalf("plan at %s:\n%s\nwant:\n%s", now.Format(time.TimeOnly), g, w)
		}
	}

	first := reconcileAt(planNow)
	if len(first) != 9 {
		t.Errorf("first plan:\n%s", strings.Join(lines(first), "\n"))
	}
	check(planNow, "! orphaned share stray (not in spec, kept)")

	// Two hours on: a snapshot, and the first one pruned by "1h".
	later := planNow.Add(2 * time.Hour)
	check(later,
		"+ directory .fleetctl/snapshots/projects on pool tank",
		"+ snapshot projects (every 1h, last 2h ago)",
		"- prune snapshot projects.20261125T123000Z (retention 1h)",
		"! orphaned share stray (not in spec, kept)",
	)
	reconcileAt(later)
	check(later, "! orphaned share stray (not in spec, kept)")

	subs, err := b.Subvolumes(ctx, pool.Path())
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, sv := range subs {
		paths = append(paths, sv.Path)
	}
	slices.Sort(paths)
	if got, want := strings.Join(paths, " "), ".fleetctl/snapshots/old/old.final.20261125T123000Z .fleetctl/snapshots/projects/projects.20261125T143000Z plain projects stray"; got != want {
		t.Errorf("subvolumes: %s; want %s", got, want)
	}
}

// TestSecondRunMakesNoBtrfsMutations runs a reconcile of a converged pool
// on real btrfs and counts every mutating btrfs call: there must be none.
func TestSecondRunMakesNoBtrfsMutations(t *testing.T) {
	pool := looppooltest.ForTest(t, 0)
	ctx := context.Background()
	spec, err := schema.Parse("fleet.yaml", []byte(fmt.Sprintf(`version: 1
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: %s}]}
shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 64MiB, snapshots: {schedule: every 1h, retention: 24h}}
  - {name: plain, appliance: nas1, pool: tank}
`, pool.Path())))
	if err != nil {
		t.Fatal(err)
	}
	var mutations []string
	b := reconcile.NewBtrfs("")
	b.Observer = func(op, path string) { mutations = append(mutations, op+" "+path) }
	run := func() {
		t.Helper()
		actions := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, b, spec, "nas1"), Now: planNow})
		for _, r := range reconcile.Execute(ctx, b, actions) {
			if r.Err != nil {
				t.Fatalf("%s: %v", r.Action, r.Err)
			}
		}
	}
	run()
	if len(mutations) == 0 {
		t.Fatalf("the first run made no btrfs mutations; the counter is not wired")
	}
	mutations = nil
	run()
	if len(mutations) != 0 {
		t.Fatalf("a second run on a converged pool mutated btrfs: %v", mutations)
	}

	// A directory on btrfs that is not a mount point is not a pool.
	dir := filepath.Join(pool.Path(), "not-a-pool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.IsBtrfs(ctx, dir); ok || err != nil {
		t.Fatalf("IsBtrfs(a plain directory on btrfs) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := b.IsBtrfs(ctx, pool.Path()); !ok || err != nil {
		t.Fatalf("IsBtrfs(the pool's mount point) = %v, %v; want true, nil", ok, err)
	}
}
