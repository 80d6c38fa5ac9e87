package reconcile_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// failoverShares is the replicated share of the failover tests: projects
// on nas1/tank, replicated to nas2/tank, with a quota and snapshots.
const failoverShares = `
  - name: projects
    appliance: nas1
    pool: tank
    quota: 1GiB
    snapshots: {schedule: every 1h, retention: 24h}
    replication: {to: nas2/tank, schedule: every 1h, retention: 24h}
`

// received lays out a completed received snapshot of projects on /tank,
// named for stamp, as a copy of the sent subvolume sentUUID.
func (d disk) received(stamp, sentUUID string) disk {
	d.t.Helper()
	ctx := context.Background()
	dir := filepath.Join("/tank", reconcile.ReceivedDir, "projects")
	d.ok(d.MkdirAll(ctx, dir))
	path := filepath.Join(dir, "projects."+stamp)
	d.ok(d.CreateSubvolume(ctx, path))
	d.ok(d.MarkReceived(path, sentUUID))
	return d
}

// replicated takes a replication snapshot of /tank/projects named stamp.
func (d disk) replicated(stamp string) disk {
	d.t.Helper()
	ctx := context.Background()
	dir := filepath.Join("/tank", reconcile.ReplicationDir, "projects")
	d.ok(d.MkdirAll(ctx, dir))
	d.ok(d.Snapshot(ctx, "/tank/projects", filepath.Join(dir, stamp), true))
	return d
}

// touch records a write to /tank/projects.
func (d disk) touch() disk {
	d.t.Helper()
	d.ok(d.Touch("/tank/projects"))
	return d
}

// failoverPlan observes d and plans for appliance with projects active as
// act says (the zero Activation: as the spec says).
func failoverPlan(t testing.TB, d disk, appliance string, act schema.Activation) []reconcile.Action {
	return failoverPlanAt(t, d, appliance, act, planNow)
}

func failoverPlanAt(t testing.TB, d disk, appliance string, act schema.Activation, now time.Time) []reconcile.Action {
	t.Helper()
	spec := mustSpec(t, failoverShares)
	var active map[string]schema.Activation
	if act != (schema.Activation{}) {
		active = map[string]schema.Activation{"projects": act}
	}
	obs := reconcile.Observe(context.Background(), d, spec, appliance)
	return reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: appliance, Observed: obs, Now: now, Active: active})
}

func TestPlanFailover(t *testing.T) {
	onNas2 := schema.Activation{Appliance: "nas2", Epoch: 1}
	backOnNas1 := schema.Activation{Appliance: "nas1", Epoch: 2}
	tests := []struct {
		name      string
		appliance string
		active    schema.Activation
		disk      func(d disk)
		want      []string
		reason    string // what the first action's Reason says
	}{
		{
			name: "the replica promotes its newest completed received snapshot", appliance: "nas2", active: onNas2,
			disk: func(d disk) {
				d.received("20261125T100000Z", "sent-1").received("20261125T110000Z", "sent-2")
				// Not completed: a staging name, and a writable final name.
				d.subvol("/tank/.fleetctl/received/projects/20261125T120000Z", "/tank/.fleetctl/received/projects/projects.20261125T120000Z")
			},
			want: []string{
				"~ enable quotas on pool tank (needed by projects)",
				"+ promote share projects (from projects.20261125T110000Z)",
				"~ quota projects none → 1GiB",
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, first)",
			},
		},
		{
			name: "the replica is active but received nothing", appliance: "nas2", active: onNas2,
			disk: func(d disk) {
				d.ok(d.MkdirAll(context.Background(), "/tank/.fleetctl/received/projects"))
				d.subvol("/tank/.fleetctl/received/projects/20261125T120000Z")
			},
			want: []string{"! blocked share projects (active here after failover but nothing was ever received)"},
		},
		{
			name: "the replica before any failover does nothing", appliance: "nas2",
			disk: func(d disk) { d.received("20261125T110000Z", "sent-2") },
		},
		{
			name: "the replica before any failover reports a stray subvolume named like the share", appliance: "nas2",
			disk: func(d disk) { d.subvol("/tank/projects") },
			want: []string{"! orphaned share projects (not in spec, kept)"},
		},
		{
			name: "demoted, unchanged since its last replication snapshot", appliance: "nas1", active: onNas2,
			disk: func(d disk) {
				d.subvol("/tank/projects").snaps("/tank", "projects", "2026-11-25T09:00:00Z").replicated("20261125T110000Z")
			},
			// No snapshot although one is due, no quota, nothing orphaned.
			want:   []string{"! demoted share projects (epoch 1 active on nas2; kept read-only)"},
			reason: "neither recreated nor snapshotted",
		},
		{
			name: "demoted with writes after its last replication snapshot", appliance: "nas1", active: onNas2,
			disk: func(d disk) { d.subvol("/tank/projects").replicated("20261125T110000Z").touch() },
			want: []string{
				"+ keep diverged writes of share projects (as .fleetctl/diverged/projects.20261125T123000Z)",
				"! demoted share projects (epoch 1 active on nas2; kept read-only)",
			},
			reason: "changed after its last replication snapshot /tank/.fleetctl/replication/projects/20261125T110000Z",
		},
		{
			name: "demoted, never replicated", appliance: "nas1", active: onNas2,
			disk: func(d disk) { d.subvol("/tank/projects") },
			want: []string{
				"+ keep diverged writes of share projects (as .fleetctl/diverged/projects.20261125T123000Z)",
				"! demoted share projects (epoch 1 active on nas2; kept read-only)",
			},
			reason: "never replicated from here",
		},
		{
			name: "demoted, its writes kept already", appliance: "nas1", active: onNas2,
			disk: func(d disk) {
				d.subvol("/tank/projects").replicated("20261125T110000Z").touch()
				d.ok(d.MkdirAll(context.Background(), "/tank/"+reconcile.DivergedDir))
				d.ok(d.Snapshot(context.Background(), "/tank/projects", reconcile.DivergedPath("/tank", "projects", planNow.Add(-time.Hour)), true))
			},
			want:   []string{"! demoted share projects (epoch 1 active on nas2; kept read-only)"},
			reason: "1 diverged snapshot of it is kept in /tank/.fleetctl/diverged",
		},
		{
			name: "demoted without a copy: nothing is created", appliance: "nas1", active: onNas2,
			want: []string{"! demoted share projects (epoch 1 active on nas2; no copy here)"},
		},
		{
			name: "demoted and marked absent: nothing is deleted", appliance: "nas1", active: onNas2,
			disk: func(d disk) { d.subvol("/tank/projects").replicated("20261125T110000Z") },
			want: []string{"! demoted share projects (epoch 1 active on nas2; kept read-only)"},
		},
		{
			name: "the replica demoted after a failback keeps its promoted share", appliance: "nas2", active: backOnNas1,
			disk: func(d disk) {
				d.received("20261125T100000Z", "sent-1")
				d.ok(d.Snapshot(context.Background(), "/tank/.fleetctl/received/projects/projects.20261125T100000Z", "/tank/projects", false))
				d.replicated("20261125T110000Z")
			},
			want: []string{"! demoted share projects (epoch 2 active on nas1; kept read-only)"},
		},
		{
			name: "failback without a share promotes what came back", appliance: "nas1", active: backOnNas1,
			disk: func(d disk) { d.received("20261125T110000Z", "sent-2") },
			want: []string{
				"~ enable quotas on pool tank (needed by projects)",
				"+ promote share projects (from projects.20261125T110000Z)",
				"~ quota projects none → 1GiB",
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, first)",
			},
		},
		{
			name: "failback onto the old share, older than what came back", appliance: "nas1", active: backOnNas1,
			disk: func(d disk) { d.subvol("/tank/projects").received("20261125T110000Z", "sent-2") },
			// Set aside (kept, then reported as orphaned), never deleted;
			// the newest received data is promoted in its place.
			want: []string{
				"~ enable quotas on pool tank (needed by projects)",
				"~ set aside share projects (as projects.before-epoch-2)",
				"+ promote share projects (from projects.20261125T110000Z)",
				"~ quota projects none → 1GiB",
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, first)",
			},
		},
		{
			name: "failback without a share or anything received", appliance: "nas1", active: backOnNas1,
			want: []string{"! blocked share projects (active here after failover but nothing was ever received)"},
		},
		{
			name: "no failover: a missing share is created", appliance: "nas1",
			want: []string{
				"~ enable quotas on pool tank (needed by projects)",
				"+ create share projects (quota 1GiB)",
				"~ quota projects none → 1GiB",
				"+ directory .fleetctl/snapshots/projects on pool tank",
				"+ snapshot projects (every 1h, first)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDisk(t)
			if tt.disk != nil {
				tt.disk(d)
			}
			shares := failoverShares
			if strings.Contains(tt.name, "absent") {
				shares = strings.Replace(shares, "quota: 1GiB", "state: absent", 1)
			}
			spec := mustSpec(t, shares)
			var active map[string]schema.Activation
			if tt.active != (schema.Activation{}) {
				active = map[string]schema.Activation{"projects": tt.active}
			}
			in := reconcile.PlanInput{Spec: spec, Appliance: tt.appliance, Observed: reconcile.Observe(context.Background(), d, spec, tt.appliance), Now: planNow, Active: active}
			got := reconcile.Plan(in)
			if g, w := strings.Join(lines(got), "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Fatalf("plan:\n%s\nwant:\n%s", g, w)
			}
			if tt.reason != "" && !strings.Contains(got[0].Reason, tt.reason) {
				t.Errorf("reason of %q is %q; want it to say %q", got[0], got[0].Reason, tt.reason)
			}
			for _, a := range got {
				if a.Reason == "" {
					t.Errorf("%q has no reason", a)
				}
				if a.ReportOnly != (a.Symbol() == "!") {
					t.Errorf("%q: ReportOnly %t", a, a.ReportOnly)
				}
				if a.Kind == reconcile.ActionDeleteShare || a.Kind == reconcile.ActionPruneSnapshot || a.Kind == reconcile.ActionCreateShare && tt.active != (schema.Activation{}) {
					t.Errorf("%q after a failover", a)
				}
			}
			if again := reconcile.Plan(in); !slices.Equal(lines(again), lines(got)) {
				t.Errorf("second plan differs:\n%s", strings.Join(lines(again), "\n"))
			}
		})
	}
}

// TestPromoteAndKeepDiverged executes the failover plans of both
// appliances on fakes: the replica's share becomes a writable snapshot of
// its newest received snapshot, which stays read-only with its received
// UUID; the old active keeps its unreplicated writes once per change; then
// both plans are reports only.
func TestPromoteAndKeepDiverged(t *testing.T) {
	ctx := context.Background()
	act := schema.Activation{Appliance: "nas2", Epoch: 1}

	nas2 := newDisk(t)
	nas2.received("20261125T110000Z", "sent-2")
	results := reconcile.Execute(ctx, nas2, failoverPlan(t, nas2, "nas2", act))
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("nas2: %v", r.Err)
		}
	}
	const recv = "/tank/.fleetctl/received/projects/projects.20261125T110000Z"
	if log := nas2.Log(); !slices.Contains(log, "Snapshot "+recv+" /tank/projects ro=false") {
		t.Errorf("nas2 did not promote with a writable snapshot: %q", log)
	}
	share, _ := nas2.Lookup("/tank/projects")
	base, _ := nas2.Lookup(recv)
	if share.ReadOnly || share.ReceivedUUID != "" || share.ParentUUID != base.UUID {
		t.Errorf("promoted share: %+v; want writable, no received UUID, a snapshot of %s", share, base.UUID)
	}
	if !base.ReadOnly || base.ReceivedUUID != "sent-2" {
		t.Errorf("the received snapshot after promotion: %+v; want it read-only with received UUID sent-2", base)
	}
	if again := failoverPlan(t, nas2, "nas2", act); len(again) != 0 {
		t.Errorf("nas2 after promotion: %q; want nothing (not orphaned, converged)", lines(again))
	}

	nas1 := newDisk(t)
	nas1.subvol("/tank/projects").replicated("20261125T110000Z").touch()
	nas1.ok(nas1.SetReadOnly(ctx, "/tank/projects", true)) // the store's fencing
	before := nas1.Mutations()
	for _, r := range reconcile.Execute(ctx, nas1, failoverPlan(t, nas1, "nas1", act)) {
		if r.Err != nil {
			t.Fatalf("nas1: %v", r.Err)
		}
	}
	kept := reconcile.DivergedPath("/tank", "projects", planNow)
	d, ok := nas1.Lookup(kept)
	if share, _ := nas1.Lookup("/tank/projects"); !ok || !d.ReadOnly || d.ParentUUID != share.UUID {
		t.Fatalf("diverged snapshot %s: %+v (found %t); want a read-only snapshot of the share", kept, d, ok)
	}
	if log := nas1.Log()[before:]; !slices.Equal(log, []string{"MkdirAll /tank/.fleetctl/diverged", "Snapshot /tank/projects " + kept + " ro=true"}) {
		t.Errorf("nas1 did %q", log)
	}
	again := failoverPlan(t, nas1, "nas1", act)
	if want := "! demoted share projects (epoch 1 active on nas2; kept read-only)"; len(again) != 1 || again[0].String() != want {
		t.Errorf("nas1 after keeping its writes: %q; want only %q", lines(again), want)
	}

	// Written again (before the fence, say): kept again, under a new name.
	nas1.ok(nas1.SetReadOnly(ctx, "/tank/projects", false))
	nas1.touch()
	later := failoverPlanAt(t, nas1, "nas1", act, planNow.Add(time.Minute))
	if len(later) != 2 || later[0].Kind != reconcile.ActionKeepDiverged || later[0].Path != reconcile.DivergedPath("/tank", "projects", planNow.Add(time.Minute)) {
		t.Errorf("nas1 after another write: %q", lines(later))
	}
}

func TestExecutePromotePrerequisite(t *testing.T) {
	ctx := context.Background()
	d := newDisk(t)
	d.received("20261125T110000Z", "sent-2")
	d.Fail("Snapshot", "/tank/projects", errors.New("no space"))
	var got []string
	for _, r := range reconcile.Execute(ctx, d, failoverPlan(t, d, "nas2", schema.Activation{Appliance: "nas2", Epoch: 1})) {
		word, _, _ := strings.Cut(outcome(r), ":")
		got = append(got, word)
	}
	want := []string{"ok", "failed", "skipped", "ok", "skipped"} // enable-quota, promote, set-quota, mkdir, snapshot
	if !slices.Equal(got, want) {
		t.Errorf("outcomes %q; want %q", got, want)
	}
}

func TestExecuteRefusesBadFailoverActions(t *testing.T) {
	d := newDisk(t)
	d.subvol("/tank/projects", "/tank/other")
	res := reconcile.Execute(context.Background(), d, []reconcile.Action{
		{Kind: reconcile.ActionPromote, Pool: "tank", Share: "x", Path: "/tank/x", Source: "/tank/other"},
		{Kind: reconcile.ActionKeepDiverged, Pool: "tank", Share: "projects", Path: "/tank/projects.kept", Source: "/tank/projects"},
		{Kind: reconcile.ActionKeepDiverged, Pool: "tank", Share: "projects", Path: "/tank/.fleetctl/diverged/sub/projects.20261125T123000Z", Source: "/tank/projects"},
		{Kind: reconcile.ActionDemoted, Pool: "tank", Share: "projects", Path: "/tank/projects", ReportOnly: true},
	})
	if len(res) != 3 {
		t.Fatalf("%d results; want 3 (reports are not executed)", len(res))
	}
	for _, r := range res {
		if r.Err == nil || !strings.Contains(r.Err.Error(), "refusing") {
			t.Errorf("%s: %v; want it refused", r.Action, r.Err)
		}
	}
	if n := d.Mutations(); n != 2 {
		t.Errorf("%d mutations; want only the setup's", n)
	}
}

func TestFailoverActionString(t *testing.T) {
	for _, c := range []struct {
		a    reconcile.Action
		want string
	}{
		{reconcile.Action{Kind: reconcile.ActionPromote, Share: "projects", Detail: "from projects.20261125T110000Z"}, "+ promote share projects (from projects.20261125T110000Z)"},
		{reconcile.Action{Kind: reconcile.ActionKeepDiverged, Share: "projects", Detail: "as .fleetctl/diverged/projects.20261125T123000Z"}, "+ keep diverged writes of share projects (as .fleetctl/diverged/projects.20261125T123000Z)"},
		{reconcile.Action{Kind: reconcile.ActionDemoted, Share: "projects", Detail: "epoch 1 active on nas2; kept read-only"}, "! demoted share projects (epoch 1 active on nas2; kept read-only)"},
	} {
		if got := c.a.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}

func TestSharePool(t *testing.T) {
	spec := mustSpec(t, failoverShares+"  - {name: local, appliance: nas1, pool: pool2}\n")
	for _, c := range []struct{ share, appliance, want string }{
		{"projects", "nas1", "/tank"},
		{"projects", "nas2", "/tank"},
		{"projects", "nas3", ""},
		{"local", "nas1", "/pool2"},
		{"local", "nas2", ""},
	} {
		got := ""
		if p := reconcile.SharePool(spec, spec.Share(c.share), c.appliance); p != nil {
			got = p.Path
		}
		if got != c.want {
			t.Errorf("SharePool(%s, %s) = %q, want %q", c.share, c.appliance, got, c.want)
		}
	}
}

// TestLoopFollowsActivation runs the loop on the replica: nothing until the
// activation says it is active, then it promotes at once (not at the next
// interval) and reports the share as its own; the old active reports its
// copy as demoted with the diverged snapshot it kept.
func TestLoopFollowsActivation(t *testing.T) {
	spec := mustSpec(t, failoverShares)
	nas2 := newDisk(t)
	nas2.received("20261125T110000Z", "sent-2")
	setup := nas2.Mutations()

	var mu sync.Mutex
	var active map[string]schema.Activation
	changed := make(chan struct{})
	reports := make(chan reconcile.Report, 10)
	l := &reconcile.Loop{
		Appliance: "nas2", Driver: nas2, Interval: time.Hour, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return planNow },
		Watch: func() (*schema.Spec, uint64, <-chan struct{}) {
			mu.Lock()
			defer mu.Unlock()
			return spec, 1, changed
		},
		Active: func() map[string]schema.Activation {
			mu.Lock()
			defer mu.Unlock()
			return active
		},
		Publish: func(ctx context.Context, r reconcile.Report) error { reports <- r; return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	defer func() { cancel(); <-done }()

	first := <-reports
	if len(first.Shares) != 0 || nas2.Mutations() != setup {
		t.Fatalf("the replica before failover: %+v, %q", first, nas2.Log())
	}
	mu.Lock()
	active = map[string]schema.Activation{"projects": {Appliance: "nas2", Epoch: 1}}
	close(changed)
	changed = make(chan struct{})
	mu.Unlock()
	var rep reconcile.Report
	select {
	case rep = <-reports:
	case <-time.After(10 * time.Second):
		t.Fatal("no run after the activation changed")
	}
	if _, ok := nas2.Lookup("/tank/projects"); !ok || !rep.Converged {
		t.Fatalf("after failover: share promoted %t, report %+v", ok, rep)
	}
	if len(rep.Shares) != 1 || rep.Shares[0].Name != "projects" || !rep.Shares[0].Exists || rep.Shares[0].Demoted || rep.Shares[0].Snapshots != 1 || len(rep.Orphans) != 0 {
		t.Errorf("nas2's facts after promotion: %+v", rep)
	}

	nas1 := newDisk(t)
	nas1.subvol("/tank/projects").touch()
	l1 := &reconcile.Loop{Appliance: "nas1", Driver: nas1, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return planNow },
		Active: func() map[string]schema.Activation {
			return map[string]schema.Activation{"projects": {Appliance: "nas2", Epoch: 1}}
		}}
	rep1, _ := l1.Once(t.Context(), spec, 1)
	if want := (reconcile.ShareFacts{Name: "projects", Pool: "tank", Exists: true, Demoted: true, Diverged: 1}); len(rep1.Shares) != 1 || rep1.Shares[0] != want || !rep1.Converged || len(rep1.Orphans) != 0 {
		t.Errorf("nas1's report: %+v; want converged with facts %+v", rep1, want)
	}
}

// TestReceiveAfterFailover: the receiver takes the share from its active
// appliance only, at its pool for the share, and lists its own
// replication snapshots as parents it holds.
func TestReceiveAfterFailover(t *testing.T) {
	spec := mustSpec(t, failoverShares)
	act := func(string) schema.Activation { return schema.Activation{Appliance: "nas2", Epoch: 1} }
	good := reconcile.SendHeader{ID: "a1", Share: "projects", From: "nas2", Snapshot: "20261125T120000Z", UUID: "u1", Epoch: 1}
	for _, c := range []struct {
		name, receiver, peer string
		header               func(h *reconcile.SendHeader)
		says                 string
	}{
		{"the old active sends at the old epoch", "nas2", "nas1", func(h *reconcile.SendHeader) { h.From, h.Epoch = "nas1", 0 }, "from epoch 0 of share projects, which is at epoch 1 (active on nas2)"},
		{"the old active sends at the new epoch", "nas2", "nas1", func(h *reconcile.SendHeader) { h.From = "nas1" }, "replicates to nas1, not to this appliance nas2 (active on nas2 since epoch 1)"},
		{"a stranger sends to the old active", "nas1", "nas3", func(h *reconcile.SendHeader) { h.From = "nas3" }, "replicated from nas2, active since epoch 1, not from nas3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDisk(t)
			trail := &trailLog{}
			rv := &reconcile.Receiver{Appliance: c.receiver, Driver: d, Trail: trail.add, Active: act}
			h := good
			c.header(&h)
			_, err := rv.Receive(t.Context(), spec, c.peer, h, untouchable{t})
			if !errors.Is(err, reconcile.ErrRefused) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Receive: %v; want ErrRefused saying %q", err, c.says)
			}
			if e := trail.all(); len(e) != 1 || e[0].Result != reconcile.ResultRefused || d.Mutations() != 0 {
				t.Errorf("trail %+v, changes %q", e, d.Log())
			}
		})
	}

	d := newDisk(t)
	d.subvol("/tank/projects").replicated("20261125T110000Z")
	d.subvol("/tank/.fleetctl/replication/projects/20261125T115959Z") // writable: not a snapshot of ours
	rv := &reconcile.Receiver{Appliance: "nas1", Driver: d, Active: act}
	held, err := rv.Held(t.Context(), spec, "projects")
	x, _ := d.Lookup("/tank/.fleetctl/replication/projects/20261125T110000Z")
	if err != nil || len(held) != 1 || held[0].UUID != x.UUID {
		t.Errorf("Held on the old active: %+v, %v; want its replication snapshot %s", held, err, x.UUID)
	}
	if _, err := (&reconcile.Receiver{Appliance: "nas2", Driver: d, Active: act}).Held(t.Context(), spec, "projects"); !errors.Is(err, reconcile.ErrRefused) {
		t.Errorf("Held on the new active: %v; want ErrRefused", err)
	}
}
