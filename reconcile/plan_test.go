package reconcile_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/reconciletest"
	"github.com/fleetctl/fleetctl/schema"
)

// fleetHead is the start of every spec in these tests: nas1 with pools tank
// and pool2, nas2 with tank.
const fleetHead = `version: 1
appliances:
  - name: nas1
    address: nas1.example:7400
    pools:
      - {name: tank, path: /tank}
      - {name: pool2, path: /pool2}
  - name: nas2
    address: nas2.example:7400
    pools:
      - {name: tank, path: /tank}
`

// planNow is when the tests plan: a Wednesday, half past noon.
var planNow = time.Date(2026, 11, 25, 12, 30, 0, 0, time.UTC)

func mustSpec(t testing.TB, shares string) *schema.Spec {
	t.Helper()
	text := fleetHead
	if shares != "" {
		text += "shares:\n" + shares
	}
	s, err := schema.Parse("fleet.yaml", []byte(text))
	if err != nil {
		t.Fatalf("spec:\n%s\n%v", text, err)
	}
	return s
}

// disk is a FakeDriver with /tank and /pool2 mounted and helpers to lay out
// what a test starts from.
type disk struct {
	*reconciletest.FakeDriver
	t testing.TB
}

func newDisk(t testing.TB) disk {
	d := reconciletest.NewFakeDriver()
	d.AddPool("/tank")
	d.AddPool("/pool2")
	return disk{d, t}
}

func (d disk) ok(err error) {
	d.t.Helper()
	if err != nil {
		d.t.Fatal(err)
	}
}

func (d disk) subvol(paths ...string) disk {
	d.t.Helper()
	for _, p := range paths {
		d.ok(d.CreateSubvolume(context.Background(), p))
	}
	return d
}

// quota enables quotas on the pool of path and limits path to q.
func (d disk) quota(path string, q uint64) disk {
	d.t.Helper()
	d.ok(d.EnableQuota(context.Background(), filepath.Dir(path)))
	d.ok(d.SetQuota(context.Background(), path, q))
	return d
}

// snaps takes read-only snapshots of pool/share named for each time; the
// share must exist.
func (d disk) snaps(pool, share string, times ...string) disk {
	d.t.Helper()
	ctx := context.Background()
	d.ok(d.MkdirAll(ctx, filepath.Join(pool, reconcile.SnapshotDir, share)))
	for _, s := range times {
		d.ok(d.Snapshot(ctx, filepath.Join(pool, share), reconcile.SnapshotPath(pool, share, mustTime(d.t, s)), true))
	}
	return d
}

func lines(actions []reconcile.Action) []string {
	out := make([]string, len(actions))
	for i, a := range actions {
		out[i] = a.String()
	}
	return out
}

func TestPlan(t *testing.T) {
	const gib = 1 << 30
	const hourly = ", snapshots: {schedule: every 1h, retention: 24h 7d}}\n"
	tests := []struct {
		name      string
		shares    string
		disk      func(d disk)
		protected []string
		want      []string
		reasons   map[int]string // index in want → text its Reason contains
	}{
		{
			name: "new share with quota",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, quota: 200GiB}
`,
			want: []string{
				"~ enable quotas on pool tank (needed by projects)",
				"+ create share projects (quota 200GiB)",
				"~ quota projects none → 200GiB",
			},
			reasons: map[int]string{1: "/tank/projects does not exist"},
		},
		{
			name: "converged share without quota or snapshots",
			shares: `
  - {name: projects, appliance: nas1, pool: tank}
`,
			disk: func(d disk) { d.subvol("/tank/projects") },
		},
		{
			name: "quota change",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, quota: 200GiB}
`,
			disk: func(d disk) { d.subvol("/tank/projects").quota("/tank/projects", 100*gib) },
			want: []string{"~ quota projects 100GiB → 200GiB"},
		},
		{
			name: "quota below usage is set, and says writes will fail",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, quota: 100GiB}
`,
			disk: func(d disk) {
				d.subvol("/tank/projects").quota("/tank/projects", 200*gib)
				d.ok(d.SetUsage("/tank/projects", 150*gib, 150*gib))
			},
			want:    []string{"~ quota projects 200GiB → 100GiB (usage 150GiB is over it)"},
			reasons: map[int]string{0: "writes will fail until usage drops below the quota"},
		},
		{
			name: "quota removed from the spec",
			shares: `
  - {name: projects, appliance: nas1, pool: tank}
`,
			disk:    func(d disk) { d.subvol("/tank/projects").quota("/tank/projects", 100*gib) },
			want:    []string{"~ quota projects 100GiB → none"},
			reasons: map[int]string{0: "none in the spec"},
		},
		{
			name: "quotas enabled once for several shares",
			shares: `
  - {name: a, appliance: nas1, pool: tank, quota: 1GiB}
  - {name: b, appliance: nas1, pool: tank}
  - {name: c, appliance: nas1, pool: tank, quota: 2GiB}
`,
			disk: func(d disk) { d.subvol("/tank/a", "/tank/b", "/tank/c") },
			want: []string{
				"~ enable quotas on pool tank (needed by a, c)",
				"~ quota a none → 1GiB",
				"~ quota c none → 2GiB",
			},
		},
		{
			name: "share deleted by hand is recreated, its snapshots noted",
			shares: `
  - {name: projects, appliance: nas1, pool: tank` + hourly,
			disk: func(d disk) {
				d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-25T12:00:00Z")
				d.ok(d.DeleteSubvolume(context.Background(), "/tank/projects"))
			},
			want:    []string{"+ create share projects"},
			reasons: map[int]string{0: "1 earlier snapshot of it is kept in /tank/.fleetctl/snapshots/projects"},
		},
		{
			name: "state absent deletes the share and keeps its snapshots",
			shares: `
  - {name: old, appliance: nas1, pool: tank, state: absent` + hourly,
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
			name: "state absent and already gone",
			shares: `
  - {name: old, appliance: nas1, pool: tank, state: absent}
`,
		},
		{
			name: "state absent with nested subvolumes is blocked",
			shares: `
  - {name: old, appliance: nas1, pool: tank, state: absent}
`,
			disk: func(d disk) { d.subvol("/tank/old", "/tank/old/inner") },
			want: []string{"! blocked share old (state: absent, but it holds subvolumes old/inner)"},
		},
		{
			name: "a directory holding subvolumes where a share belongs is blocked",
			shares: `
  - {name: projects, appliance: nas1, pool: tank, quota: 1GiB` + hourly,
			disk: func(d disk) {
				d.ok(d.MkdirAll(context.Background(), "/tank/projects"))
				d.subvol("/tank/projects/inner")
			},
			want: []string{"! blocked share projects (a directory holding subvolumes is in the way)"},
		},
		{
			name: "dropped from the spec: orphaned, never deleted",
			shares: `
  - {name: projects, appliance: nas1, pool: tank}
  - {name: elsewhere, appliance: nas2, pool: tank}
`,
			disk: func(d disk) {
				d.subvol("/tank/projects", "/tank/tmp", "/tank/elsewhere", "/tank/projects/nested").
					snaps("/tank", "tmp", "2026-11-01T00:00:00Z")
				d.ok(d.MkdirAll(context.Background(), "/tank/dir"))
				d.subvol("/tank/dir/inside")
			},
			want: []string{
				"! orphaned share elsewhere (not in spec, kept)",
				"! orphaned share tmp (not in spec, kept)",
			},
			reasons: map[int]string{1: "not in the spec: kept on disk"},
		},
		{
			name: "shares of other appliances are not planned here",
			shares: `
  - {name: theirs, appliance: nas2, pool: tank, quota: 1GiB}
`,
		},
		{
			name: "two pools, in spec order, each in plan order",
			shares: `
  - {name: b, appliance: nas1, pool: pool2, quota: 1GiB}
  - {name: a, appliance: nas1, pool: tank}
  - {name: gone, appliance: nas1, pool: pool2, state: absent}
  - {name: c, appliance: nas1, pool: pool2}
`,
			disk: func(d disk) { d.subvol("/pool2/gone", "/tank/stray") },
			want: []string{
				"+ create share a",
				"! orphaned share stray (not in spec, kept)",
				"~ enable quotas on pool pool2 (needed by b)",
				"+ create share b (quota 1GiB)",
				"+ create share c",
				"~ quota b none → 1GiB",
				"+ final snapshot of share gone (as .fleetctl/snapshots/gone/gone.final.20261125T123000Z, then delete)",
				"- delete share gone (state: absent, after its final snapshot)",
			},
		},
		{
			name: "a pool that cannot be observed gets only an error",
			shares: `
  - {name: a, appliance: nas1, pool: tank}
  - {name: b, appliance: nas1, pool: pool2, state: absent}
`,
			disk: func(d disk) { d.Fail("IsBtrfs", "/pool2", fmt.Errorf("statfs /pool2: input/output error")) },
			want: []string{
				"+ create share a",
				"! pool pool2 unavailable (check btrfs /pool2: statfs /pool2: input/output error)",
			},
		},
		{
			name:   "first snapshot of a new share",
			shares: "  - {name: projects, appliance: nas1, pool: tank" + hourly,
			want: []string{
				"+ create share projects",
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, first)",
			},
		},
		{
			name:   "snapshot due",
			shares: "  - {name: projects, appliance: nas1, pool: tank" + hourly,
			disk:   func(d disk) { d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-25T11:00:00Z") },
			want: []string{
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, last 1h ago)",
			},
		},
		{
			name:   "snapshot not due",
			shares: "  - {name: projects, appliance: nas1, pool: tank" + hourly,
			disk:   func(d disk) { d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-25T12:00:00Z") },
		},
		{
			name:   "missed ticks give one snapshot",
			shares: "  - {name: projects, appliance: nas1, pool: tank" + hourly,
			disk:   func(d disk) { d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-24T20:00:00Z") },
			want: []string{
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, last 16h ago)",
			},
		},
		{
			name: "cron schedule",
			shares: `
  - name: scratch
    appliance: nas1
    pool: tank
    snapshots: {schedule: "0 2 * * *", retention: 7d}
`,
			disk: func(d disk) { d.subvol("/tank/scratch").snaps("/tank", "scratch", "2026-11-24T02:00:00Z") },
			want: []string{
				"+ directory .fleetctl/snapshots/scratch on pool tank",
				"+ snapshot scratch (0 2 * * *, last 34h ago)",
			},
		},
		{
			name: "snapshots of an absent share are not taken",
			shares: `
  - {name: old, appliance: nas1, pool: tank, state: absent` + hourly,
		},
		{
			name: "retention prunes, keeping keep_min and protected snapshots",
			shares: `
  - name: projects
    appliance: nas1
    pool: tank
    snapshots: {schedule: every 1h, retention: 1h, keep_min: 3}
`,
			disk: func(d disk) {
				d.subvol("/tank/projects").snaps("/tank", "projects",
					"2026-11-25T08:00:00Z", "2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z",
					"2026-11-25T11:00:00Z", "2026-11-25T12:00:00Z")
			},
			// 12:00 and 11:00 by retention (this hour and the one before),
			// 10:00 as the third newest, 08:00 because a replication needs it.
			protected: []string{"/tank/.fleetctl/snapshots/projects/projects.20261125T080000Z"},
			want:      []string{"- prune snapshot projects.20261125T090000Z (retention 1h)"},
			reasons:   map[int]string{0: `retention "1h" with keep_min 3 no longer keeps it`},
		},
		{
			name: "retention counts the snapshot being taken",
			shares: `
  - name: projects
    appliance: nas1
    pool: tank
    snapshots: {schedule: every 1h, retention: 1h}
`,
			disk: func(d disk) {
				d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z")
			},
			want: []string{
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, last 1h ago)",
				"- prune snapshot projects.20261125T100000Z (retention 1h)",
			},
		},
		{
			name: "names that do not parse, and writable snapshots, are left alone",
			shares: `
  - name: projects
    appliance: nas1
    pool: tank
    snapshots: {schedule: every 1h, retention: 1h}
`,
			disk: func(d disk) {
				ctx := context.Background()
				d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-01T00:00:00Z", "2026-11-25T12:00:00Z")
				dir := "/tank/.fleetctl/snapshots/projects/"
				for _, name := range []string{"projects.notatime", "projects.20261101T000000", "other.20261101T000000Z", "projects.20261101T000000Z.bak", "projects.20261301T000000Z"} {
					d.ok(d.Snapshot(ctx, "/tank/projects", dir+name, true))
				}
				d.ok(d.Snapshot(ctx, "/tank/projects", dir+"projects.20261102T000000Z", false))
				d.ok(d.MkdirAll(ctx, "/tank/.fleetctl/snapshots/projects/sub"))
				d.ok(d.Snapshot(ctx, "/tank/projects", dir+"sub/projects.20261103T000000Z", true))
			},
			want: []string{"- prune snapshot projects.20261101T000000Z (retention 1h)"},
		},
		{
			name: "snapshot config removed: snapshots kept",
			shares: `
  - {name: projects, appliance: nas1, pool: tank}
`,
			disk: func(d disk) { d.subvol("/tank/projects").snaps("/tank", "projects", "2020-01-01T00:00:00Z") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := mustSpec(t, tt.shares)
			d := newDisk(t)
			if tt.disk != nil {
				tt.disk(d)
			}
			protected := map[string]bool{}
			for _, p := range tt.protected {
				protected[p] = true
			}
			obs := reconcile.Observe(context.Background(), d, spec, "nas1")
			got := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: obs, Now: planNow, Protected: protected})
			if g, w := strings.Join(lines(got), "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Fatalf("plan:\n%s\nwant:\n%s", g, w)
			}
			for i, want := range tt.reasons {
				if !strings.Contains(got[i].Reason, want) {
					t.Errorf("reason of %q is %q; want it to say %q", got[i], got[i].Reason, want)
				}
			}
			for _, a := range got {
				if a.Reason == "" {
					t.Errorf("%q has no reason", a)
				}
				if a.ReportOnly != (a.Symbol() == "!") {
					t.Errorf("%q: ReportOnly %t", a, a.ReportOnly)
				}
			}
			// Pure: planning again from the same input gives the same plan.
			again := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: obs, Now: planNow, Protected: protected})
			if g, w := strings.Join(lines(again), "\n"), strings.Join(lines(got), "\n"); g != w {
				t.Fatalf("second plan differs:\n%s\nfirst:\n%s", g, w)
			}
		})
	}
}

func TestPlanNothingForUnknownOrWitnessAppliance(t *testing.T) {
	spec := mustSpec(t, "  - {name: a, appliance: nas1, pool: tank}\n")
	for _, name := range []string{"nas9", ""} {
		if got := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: name, Now: planNow}); len(got) != 0 {
			t.Errorf("plan for %q: %q; want nothing", name, lines(got))
		}
	}
	if got := reconcile.Plan(reconcile.PlanInput{Appliance: "nas1", Now: planNow}); len(got) != 0 {
		t.Errorf("plan without spec: %q", lines(got))
	}
}

func TestPlanUnobservedPool(t *testing.T) {
	spec := mustSpec(t, "  - {name: a, appliance: nas1, pool: tank}\n")
	obs := reconcile.Observed{Pools: map[string]reconcile.PoolObservation{"tank": {Path: "/tank"}}}
	got := lines(reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: obs, Now: planNow}))
	want := []string{"+ create share a", "! pool pool2 unavailable (the pool was not observed)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPlanIdempotent runs plan, execute, observe, plan: the second plan has
// only reports, executing it changes nothing, and an hour later only the
// snapshots are due.
func TestPlanIdempotent(t *testing.T) {
	ctx := context.Background()
	spec := mustSpec(t, `
  - name: projects
    appliance: nas1
    pool: tank
    quota: 200GiB
    snapshots: {schedule: every 1h, retention: 2h 2d, keep_min: 2}
  - {name: media, appliance: nas1, pool: tank, quota: 1TiB}
  - {name: noquota, appliance: nas1, pool: tank}
  - {name: old, appliance: nas1, pool: tank, state: absent}
  - name: scratch
    appliance: nas1
    pool: pool2
    snapshots: {schedule: "*/15 * * * *", retention: 4h}
`)
	d := newDisk(t)
	d.subvol("/tank/projects", "/tank/old", "/tank/stray", "/tank/noquota").
		quota("/tank/noquota", 5<<30).
		snaps("/tank", "projects", "2026-11-20T00:00:00Z", "2026-11-24T10:00:00Z", "2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z")

	first := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, d, spec, "nas1"), Now: planNow})
	for _, r := range reconcile.Execute(ctx, d, first) {
		if r.Err != nil {
			t.Fatalf("first run: %v", r.Err)
		}
	}
	if d.Mutations() == 0 {
		t.Fatal("first run changed nothing")
	}

	before := d.Mutations()
	second := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, d, spec, "nas1"), Now: planNow})
	for _, a := range second {
		if !a.ReportOnly {
			t.Errorf("second plan has %q; first was:\n%s", a, strings.Join(lines(first), "\n"))
		}
	}
	if want := "! orphaned share stray (not in spec, kept)"; len(second) != 1 || second[0].String() != want {
		t.Errorf("second plan: %q; want only %q", lines(second), want)
	}
	if res := reconcile.Execute(ctx, d, second); len(res) != 0 {
		t.Errorf("executing reports gave results: %v", res)
	}
	if n := d.Mutations() - before; n != 0 {
		t.Errorf("second run made %d mutations: %q", n, d.Log()[before:])
	}

	// An hour on: one snapshot each, pruning by retention, nothing else.
	later := reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: reconcile.Observe(ctx, d, spec, "nas1"), Now: planNow.Add(time.Hour)})
	want := []string{
		"+ directory .fleetctl/snapshots/projects on pool tank",
		"+ snapshot projects (every 1h, last 1h ago)",
		"- prune snapshot projects.20261125T100000Z (retention 2h 2d)",
		"! orphaned share stray (not in spec, kept)",
		"+ directory .fleetctl/snapshots/scratch on pool pool2",
		"+ snapshot scratch (*/15 * * * *, last 1h ago)",
	}
	if g, w := strings.Join(lines(later), "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("an hour later:\n%s\nwant:\n%s", g, w)
	}
}

func TestActionString(t *testing.T) {
	tests := []struct {
		a    reconcile.Action
		want string
	}{
		{reconcile.Action{Kind: reconcile.ActionCreateShare, Share: "projects", Detail: "quota 200GiB"}, "+ create share projects (quota 200GiB)"},
		{reconcile.Action{Kind: reconcile.ActionSetQuota, Share: "projects", OldQuota: 100 << 30, Quota: 200 << 30}, "~ quota projects 100GiB → 200GiB"},
		{reconcile.Action{Kind: reconcile.ActionClearQuota, Share: "projects", OldQuota: 123456789}, "~ quota projects 123456789B → none"},
		{reconcile.Action{Kind: reconcile.ActionDeleteShare, Share: "old", Detail: "state: absent"}, "- delete share old (state: absent)"},
		{reconcile.Action{Kind: reconcile.ActionOrphaned, Share: "tmp", Detail: "not in spec, kept"}, "! orphaned share tmp (not in spec, kept)"},
		{reconcile.Action{Kind: reconcile.ActionSnapshot, Share: "projects", Detail: "every 1h, last 2h ago"}, "+ snapshot projects (every 1h, last 2h ago)"},
		{reconcile.Action{Kind: reconcile.ActionPruneSnapshot, Share: "projects", Path: "/tank/.fleetctl/snapshots/projects/projects.20261101T000000Z", Detail: "retention 24h 7d"}, "- prune snapshot projects.20261101T000000Z (retention 24h 7d)"},
		{reconcile.Action{Kind: reconcile.ActionPoolError, Pool: "tank", Detail: "boom"}, "! pool tank unavailable (boom)"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("String() = %q; want %q", got, tt.want)
		}
	}
}

// convergedFleet is a spec of n shares on nas1/tank, each with a quota and
// hourly snapshots, and a disk that matches it at planNow with 24 snapshots
// per share.
func convergedFleet(b testing.TB, n int) (*schema.Spec, *reconciletest.FakeDriver) {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "  - name: share%04d\n    appliance: nas1\n    pool: tank\n    quota: 10GiB\n    snapshots: {schedule: every 1h, retention: 24h}\n", i)
	}
	spec := mustSpec(b, sb.String())
	d := newDisk(b)
	ctx := context.Background()
	d.ok(d.EnableQuota(ctx, "/tank"))
	for i := range n {
		p := fmt.Sprintf("/tank/share%04d", i)
		d.subvol(p)
		d.ok(d.SetQuota(ctx, p, 10<<30))
		name := filepath.Base(p)
		d.ok(d.MkdirAll(ctx, filepath.Join("/tank", reconcile.SnapshotDir, name)))
		for h := range 24 {
			d.ok(d.Snapshot(ctx, p, reconcile.SnapshotPath("/tank", name, planNow.Truncate(time.Hour).Add(-time.Duration(h)*time.Hour)), true))
		}
	}
	return spec, d.FakeDriver
}

func BenchmarkPlan1000Shares(b *testing.B) {
	spec, d := convergedFleet(b, 1000)
	obs := reconcile.Observe(context.Background(), d, spec, "nas1")
	in := reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: obs, Now: planNow}
	if got := reconcile.Plan(in); len(got) != 0 {
		b.Fatalf("not converged: %q", lines(got)[:min(5, len(got))])
	}
	b.ReportAllocs()
	cpu := reconcile.StartCPU(b)
	for b.Loop() {
		reconcile.Plan(in)
	}
	cpu.Report()
}

func BenchmarkNoopReconcile1000Shares(b *testing.B) {
	ctx := context.Background()
	spec, d := convergedFleet(b, 1000)
	before := d.Mutations()
	b.ReportAllocs()
	cpu := reconcile.StartCPU(b)
	for b.Loop() {
		obs := reconcile.Observe(ctx, d, spec, "nas1")
		reconcile.Execute(ctx, d, reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: "nas1", Observed: obs, Now: planNow}))
	}
	cpu.Report()
	if n := d.Mutations() - before; n != 0 {
		b.Fatalf("a converged fleet made %d mutations", n)
	}
}
