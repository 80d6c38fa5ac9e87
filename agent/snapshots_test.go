package agent

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// TestSnapshots: any agent (here the witness, which has no pools) lists
// every copy of a share on both appliances of its pair, each appliance
// answering for its own pools through its driver, sorted by share and
// time; --appliance narrows it; an unknown share or appliance is not
// found; an appliance that does not answer is reported beside the copies
// of the others.
func TestSnapshots(t *testing.T) {
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleWitness}
	nodes, drivers := witnessFleet(t, roles...)
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", "n1", "n2", schema.FailoverAuto})
	ctx := t.Context()

	// n2 holds a received copy (older than n1's replication snapshot,
	// which seedShare took now) and a diverged one; n1 a set-aside copy.
	old := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	stamp := old.Format(reconcile.StampFormat)
	n2pool, n1pool := poolPath("n2"), poolPath("n1")
	for _, err := range []error{
		drivers["n2"].CreateSubvolume(ctx, sharePath("n2", "scratch")),
		drivers["n2"].MkdirAll(ctx, filepath.Join(n2pool, reconcile.ReceivedDir, "projects")),
		drivers["n2"].MkdirAll(ctx, filepath.Join(n2pool, reconcile.DivergedDir)),
		drivers["n2"].Snapshot(ctx, sharePath("n2", "scratch"), filepath.Join(n2pool, reconcile.ReceivedDir, "projects", "projects."+stamp), true),
		drivers["n2"].MarkReceived(filepath.Join(n2pool, reconcile.ReceivedDir, "projects", "projects."+stamp), "sent-uuid"),
		drivers["n2"].Snapshot(ctx, sharePath("n2", "scratch"), reconcile.DivergedPath(n2pool, "projects", old.Add(time.Minute)), true),
		drivers["n1"].Snapshot(ctx, sharePath("n1", "projects"), reconcile.BeforeEpochPath(n1pool, "projects", 2), false),
		drivers["n2"].MkdirAll(ctx, filepath.Join(n2pool, reconcile.SnapshotDir, "gone")),
		drivers["n2"].Snapshot(ctx, sharePath("n2", "scratch"), reconcile.SnapshotPath(n2pool, "gone", old), true),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	c := clientFor(t, nodes[2])
	res, err := c.Snapshots(ctx, "projects", "")
	if err != nil {
		t.Fatalf("snapshots of projects: %v", err)
	}
	if len(res.Errors) != 0 {
		t.Fatalf("snapshots of projects: want no errors, got %+v", res.Errors)
	}
	var got []string
	for _, cp := range res.Copies {
		if cp.Share != "projects" || cp.Time == nil || !strings.HasPrefix(cp.Path, poolPath(cp.Appliance)+"/") {
			t.Errorf("copy %+v: want share projects, a time and a path on its appliance's pool", cp)
		}
		got = append(got, fmt.Sprintf("%s %s %s ro=%v", cp.Appliance, cp.Kind, filepath.Base(cp.Path), cp.ReadOnly))
	}
	// By time: the received copy (an hour ago), the diverged one (a
	// minute later), then n1's replication snapshot and set-aside copy
	// (made now, in that order).
	want := []string{
		"n2 received projects." + stamp + " ro=true",
		"n2 diverged projects." + old.Add(time.Minute).Format(reconcile.StampFormat) + " ro=true",
		"n1 replication ",
		"n1 before-epoch projects.before-epoch-2 ro=false",
	}
	if len(got) != len(want) {
		t.Fatalf("copies of projects:\n got %q\nwant %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("copies of projects:\n got %q\nwant %q", got, want)
		}
	}

	// One appliance only; every share (scratch on n2 has none), sorted
	// by share.
	res, err = c.Snapshots(ctx, "", "n2")
	if err != nil || len(res.Copies) != 3 || res.Copies[0].Share != "gone" || res.Copies[1].Share != "projects" || res.Copies[2].Appliance != "n2" {
		t.Fatalf("snapshots on n2: want its 3 copies, gone's first, got %+v, %v", res, err)
	}
	// A share dropped from the spec still has its copies.
	res, err = c.Snapshots(ctx, "gone", "")
	if err != nil || len(res.Copies) != 1 || res.Copies[0].Kind != reconcile.CopyScheduled || res.Copies[0].Appliance != "n2" {
		t.Fatalf("snapshots of a share no longer in the spec: want its scheduled copy on n2, got %+v, %v", res, err)
	}

	// Names the fleet does not know.
	_, err = c.Snapshots(ctx, "no-such-share", "")
	if ae := wantAPIError(t, "snapshots of an unknown share", err, client.CodeNotFound); !strings.Contains(ae.Message, `no share "no-such-share"`) {
		t.Fatalf("snapshots of an unknown share: got %q", ae.Message)
	}
	_, err = c.Snapshots(ctx, "", "n3")
	if ae := wantAPIError(t, "snapshots on the witness", err, client.CodeNotFound); !strings.Contains(ae.Message, `no storage appliance "n3"`) {
		t.Fatalf("snapshots on the witness: got %q", ae.Message)
	}

	// A pool that cannot be read is reported with the rest.
	drivers["n1"].Fail("Subvolumes", n1pool, fmt.Errorf("disk on fire"))
	res, err = c.Snapshots(ctx, "projects", "")
	if err != nil || len(res.Copies) != 2 || len(res.Errors) != 1 || res.Errors[0].Appliance != "n1" || !strings.Contains(res.Errors[0].Error, "disk on fire") {
		t.Fatalf("snapshots with n1's pool failing: want n2's 2 copies and n1's error, got %+v, %v", res, err)
	}
	drivers["n1"].Fail("Subvolumes", n1pool, nil)

	// An appliance whose agent is down is reported, not fatal.
	stop(t, nodes[1])
	res, err = c.Snapshots(ctx, "projects", "")
	if err != nil || len(res.Copies) != 2 || res.Copies[0].Appliance != "n1" || len(res.Errors) != 1 || res.Errors[0].Appliance != "n2" || !strings.Contains(res.Errors[0].Error, "agent unreachable") {
		t.Fatalf("snapshots with n2 down: want n1's 2 copies and n2 reported, got %+v, %v", res, err)
	}
	// The local route is this appliance's own list, for agents and admins.
	var local client.LocalSnapshotsResponse
	hc, err := nodes[2].peerClient("n1", nodes[0].cfg.Advertise, peerQuick)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.GetJSON(ctx, hc, "https://"+nodes[0].cfg.Advertise+"/v1/snapshots/local?share=projects", &local); err != nil || local.Appliance != "n1" || len(local.Copies) != 2 {
		t.Fatalf("n1's local copies asked by n3: want 2, got %+v, %v", local, err)
	}
}
