package reconcile_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
)

const drillShares = `  - {name: projects, appliance: nas1, pool: tank, replication: {to: nas2/tank, schedule: every 1h, retention: 1d}}
  - {name: local, appliance: nas1, pool: tank}
`

// drillAt is the clock of the drill tests.
var drillAt = time.Date(2026, 11, 25, 12, 30, 0, 0, time.UTC)

// drillDisk is nas2's pool with two received snapshots of projects, the
// newest taken by nas1 at 12:00.
func drillDisk(t *testing.T) disk {
	d := newDisk(t)
	return d.received("20261125T110000Z", "u1").received("20261125T120000Z", "u2")
}

// drillReceiver is nas2's receiver with a clock that moves a second each
// time it is read and check as its check.
func drillReceiver(d disk, trail *trailLog, check reconcile.CheckFunc) *reconcile.Receiver {
	now := drillAt
	return &reconcile.Receiver{Appliance: "nas2", Driver: d, Trail: trail.add, Check: check,
		Now: func() time.Time { now = now.Add(time.Second); return now }}
}

// paths lists the pool's subvolume paths.
func paths(t *testing.T, d disk) []string {
	t.Helper()
	subs, err := d.Subvolumes(context.Background(), "/tank")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range subs {
		out = append(out, s.Path)
	}
	slices.Sort(out)
	return out
}

// TestDrillClonesChecksAndRemoves: the newest received snapshot is cloned
// writable under .fleetctl/drill, the check runs in the clone with the
// environment naming it, the clone is removed, the received snapshots are
// untouched, and the trail has the drill with its RPO and RTO.
func TestDrillClonesChecksAndRemoves(t *testing.T) {
	spec := mustSpec(t, drillShares)
	d := drillDisk(t)
	before := paths(t, d)
	trail := &trailLog{}
	var ranIn string
	check := func(ctx context.Context, dir string, env []string, command string) ([]byte, bool, error) {
		ranIn = dir
		sv, ok := d.Lookup(dir)
		if !ok || sv.ReadOnly {
			t.Errorf("the check runs in %s, which is not a writable subvolume (%+v)", dir, sv)
		}
		for _, want := range []string{"FLEETCTL_DRILL_DIR=" + dir, "FLEETCTL_DRILL_SHARE=projects", "FLEETCTL_DRILL_SNAPSHOT=20261125T120000Z"} {
			if !slices.Contains(env, want) {
				t.Errorf("env %q lacks %q", env, want)
			}
		}
		if command != "sha256sum -c sums" {
			t.Errorf("command %q", command)
		}
		return []byte("data: OK\n"), false, nil
	}
	rv := drillReceiver(d, trail, check)
	res, err := rv.Drill(t.Context(), spec, "projects", reconcile.DrillRequest{Check: "sha256sum -c sums", Start: drillAt})
	if err != nil {
		t.Fatal(err)
	}
	e := res.Entry
	if e.Side != reconcile.SideDrill || e.Result != reconcile.ResultOK || e.Error != "" || e.From != "nas1" || e.To != "nas2" || e.Snapshot != "20261125T120000Z" || e.Check != "sha256sum -c sums" {
		t.Errorf("entry %+v", e)
	}
	if e.RPO != 30*time.Minute {
		t.Errorf("RPO %s, want 30m (12:30 - the 12:00 snapshot)", e.RPO)
	}
	if e.RTO <= 0 || e.RTO > 5*time.Second {
		t.Errorf("RTO %s, want the few clock ticks to the clone", e.RTO)
	}
	if !strings.HasPrefix(res.Clone, ".fleetctl/drill/projects.20261125T") || ranIn != filepath.Join("/tank", res.Clone) || !res.Removed || res.Output != "data: OK\n" {
		t.Errorf("result %+v, check ran in %s", res, ranIn)
	}
	if after := paths(t, d); !slices.Equal(before, after) {
		t.Errorf("subvolumes before the drill %q, after %q", before, after)
	}
	if got := trail.all(); len(got) != 1 || got[0] != e {
		t.Errorf("trail %+v, want the drill's entry once", got)
	}
}

// TestDrillCheckFails: a failing check, or one that runs out of time,
// fails the drill, and the clone is removed all the same.
func TestDrillCheckFails(t *testing.T) {
	spec := mustSpec(t, drillShares)
	for _, c := range []struct {
		name    string
		timeout time.Duration
		check   reconcile.CheckFunc
		says    string
	}{
		{name: "exit 1", check: func(context.Context, string, []string, string) ([]byte, bool, error) {
			return []byte("data: FAILED\n"), false, errors.New("exit status 1")
		}, says: "check failed: exit status 1"},
		{name: "timeout", timeout: 20 * time.Millisecond, check: func(ctx context.Context, _ string, _ []string, _ string) ([]byte, bool, error) {
			<-ctx.Done()
			return nil, false, errors.New("signal: killed")
		}, says: "check timed out after 20ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := drillDisk(t)
			before := paths(t, d)
			trail := &trailLog{}
			res, err := drillReceiver(d, trail, c.check).Drill(t.Context(), spec, "projects", reconcile.DrillRequest{Check: "false", Timeout: c.timeout})
			if err != nil {
				t.Fatal(err)
			}
			if e := res.Entry; e.Result != reconcile.ResultFailed || e.Error != c.says || e.RTO <= 0 || res.CheckErr != c.says || !res.Removed {
				t.Errorf("result %+v", res)
			}
			if after := paths(t, d); !slices.Equal(before, after) {
				t.Errorf("subvolumes before the drill %q, after %q", before, after)
			}
			if len(trail.all()) != 1 {
				t.Errorf("trail %+v", trail.all())
			}
		})
	}
}

// TestDrillRefuses: an unknown share, one without replication, one this
// appliance does not receive, one with nothing received, and a bad
// request change nothing and record nothing.
func TestDrillRefuses(t *testing.T) {
	spec := mustSpec(t, drillShares)
	for _, c := range []struct {
		name      string
		appliance string
		share     string
		empty     bool
		req       reconcile.DrillRequest
		is        error
		says      string
	}{
		{name: "unknown share", share: "nope", is: reconcile.ErrRefused, says: `share "nope" is not in the spec`},
		{name: "not replicated", share: "local", is: reconcile.ErrRefused, says: "share local has no replication"},
		{name: "not the replica", appliance: "nas1", share: "projects", is: reconcile.ErrRefused, says: "replicates to nas2, not to this appliance nas1"},
		{name: "nothing received", share: "projects", empty: true, is: reconcile.ErrNothingReceived, says: "nothing has been received yet on nas2"},
		{name: "check too long", share: "projects", req: reconcile.DrillRequest{Check: strings.Repeat("x", reconcile.MaxCheckLen+1)}, says: "at most 4096"},
		{name: "timeout too long", share: "projects", req: reconcile.DrillRequest{Check: "true", Timeout: 2 * time.Hour}, says: "not between 0 and 1h0m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := drillDisk(t)
			if c.empty {
				d = newDisk(t)
			}
			m := d.Mutations()
			trail := &trailLog{}
			rv := drillReceiver(d, trail, func(context.Context, string, []string, string) ([]byte, bool, error) {
				t.Error("the check ran")
				return nil, false, nil
			})
			if c.appliance != "" {
				rv.Appliance = c.appliance
			}
			_, err := rv.Drill(t.Context(), spec, c.share, c.req)
			if err == nil || !strings.Contains(err.Error(), c.says) || c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("Drill: %v; want an error saying %q", err, c.says)
			}
			if d.Mutations() != m || len(trail.all()) != 0 {
				t.Errorf("a refused drill changed %v, recorded %+v", d.Log()[m:], trail.all())
			}
		})
	}
}

// TestDrillLeftovers: a clone a crash left is removed by the share's next
// drill (with what the check made inside it) and by CleanDrills at start;
// CleanDrills leaves what is not named like a clone.
func TestDrillLeftovers(t *testing.T) {
	spec := mustSpec(t, drillShares)
	ctx := context.Background()
	d := drillDisk(t)
	d.ok(d.MkdirAll(ctx, "/tank/"+reconcile.DrillDir))
	d.subvol("/tank/.fleetctl/drill/projects.20261101T000000Z", "/tank/.fleetctl/drill/projects.20261101T000000Z/inner",
		"/tank/.fleetctl/drill/local.20261101T000000Z", "/tank/.fleetctl/drill/notes")
	res, err := drillReceiver(d, &trailLog{}, nil).Drill(t.Context(), spec, "projects", reconcile.DrillRequest{})
	if err != nil || res.Entry.Result != reconcile.ResultOK {
		t.Fatalf("Drill: %+v, %v", res, err)
	}
	got := paths(t, d)
	if slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, ".fleetctl/drill/projects.") }) ||
		!slices.Contains(got, ".fleetctl/drill/local.20261101T000000Z") {
		t.Errorf("after a drill of projects: %q; want projects' old clone gone, local's kept", got)
	}
	if err := drillReceiver(d, &trailLog{}, nil).CleanDrills(ctx, spec); err != nil {
		t.Fatal(err)
	}
	got = paths(t, d)
	if slices.Contains(got, ".fleetctl/drill/local.20261101T000000Z") || !slices.Contains(got, ".fleetctl/drill/notes") {
		t.Errorf("after CleanDrills: %q; want every clone gone, notes kept", got)
	}
}

// TestExecCheck runs a real command in a directory: the environment, the
// output, the exit status, and a command killed when its time is up.
func TestExecCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, truncated, err := reconcile.ExecCheck(t.Context(), dir, []string{"FLEETCTL_DRILL_DIR=" + dir}, `test "$PWD" = "$FLEETCTL_DRILL_DIR" && cat data && echo oops >&2`)
	if err != nil || truncated || string(out) != "hello\noops\n" {
		t.Errorf("ExecCheck: %q, %t, %v", out, truncated, err)
	}
	if _, _, err := reconcile.ExecCheck(t.Context(), dir, nil, "exit 3"); err == nil || err.Error() != "exit status 3" {
		t.Errorf("exit 3: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := reconcile.ExecCheck(ctx, dir, nil, "sleep 60 & sleep 60"); err == nil {
		t.Error("a command killed at its timeout succeeded")
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("a command past its timeout took %s to stop", took)
	}
	out, truncated, err = reconcile.ExecCheck(t.Context(), dir, nil, `head -c 70000 /dev/zero | tr '\0' x; echo END`)
	if err != nil || !truncated || len(out) != reconcile.MaxCheckOutput || !strings.HasSuffix(string(out), "xEND\n") {
		t.Errorf("long output: %d bytes, truncated %t, %v", len(out), truncated, err)
	}
}
