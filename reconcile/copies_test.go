package reconcile_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/reconciletest"
	"github.com/fleetctl/fleetctl/schema"
)

// TestClassifyCopy: every copy of a share fleetctl keeps is named by the
// layout, its share and stamp (or epoch) read from the path alone; the
// shares themselves, staging names of receives, directories and anything
// made by hand are no copies.
func TestClassifyCopy(t *testing.T) {
	stamp := time.Date(2026, 11, 25, 8, 46, 0, 0, time.UTC)
	const s = "20261125T084600Z"
	for _, tc := range []struct {
		rel  string
		want reconcile.CopyName
	}{
		{".fleetctl/snapshots/projects/projects." + s, reconcile.CopyName{Kind: reconcile.CopyScheduled, Share: "projects", Stamp: stamp}},
		{".fleetctl/snapshots/projects/projects.final." + s, reconcile.CopyName{Kind: reconcile.CopyFinal, Share: "projects", Stamp: stamp}},
		{".fleetctl/snapshots/v1.2/v1.2." + s, reconcile.CopyName{Kind: reconcile.CopyScheduled, Share: "v1.2", Stamp: stamp}},
		{".fleetctl/snapshots/final/final.final." + s, reconcile.CopyName{Kind: reconcile.CopyFinal, Share: "final", Stamp: stamp}},
		{".fleetctl/replication/projects/" + s, reconcile.CopyName{Kind: reconcile.CopyReplication, Share: "projects", Stamp: stamp}},
		{".fleetctl/received/projects/projects." + s, reconcile.CopyName{Kind: reconcile.CopyReceived, Share: "projects", Stamp: stamp}},
		{".fleetctl/diverged/projects." + s, reconcile.CopyName{Kind: reconcile.CopyDiverged, Share: "projects", Stamp: stamp}},
		{".fleetctl/diverged/v1.2." + s, reconcile.CopyName{Kind: reconcile.CopyDiverged, Share: "v1.2", Stamp: stamp}},
		{"projects.before-epoch-2", reconcile.CopyName{Kind: reconcile.CopyBeforeEpoch, Share: "projects", Epoch: 2}},
		{"a.before-epoch-1.before-epoch-12", reconcile.CopyName{Kind: reconcile.CopyBeforeEpoch, Share: "a.before-epoch-1", Epoch: 12}},
	} {
		got, ok := reconcile.ClassifyCopy(tc.rel)
		if !ok || got != tc.want {
			t.Errorf("ClassifyCopy(%q) = %+v, %v; want %+v", tc.rel, got, ok, tc.want)
		}
	}
	for _, rel := range []string{
		"projects",
		".fleetctl",
		".fleetctl/snapshots/projects",
		".fleetctl/snapshots/projects/other." + s,         // another share's name in projects' directory
		".fleetctl/snapshots/projects/projects.20261125",  // not a stamp
		".fleetctl/snapshots/projects/projects.final.x",   // not a stamp
		".fleetctl/snapshots/projects/sub/projects." + s,  // too deep
		".fleetctl/replication/projects/projects." + s,    // replication snapshots are bare stamps
		".fleetctl/received/projects/" + s,                // a staging name: an incomplete receive
		".fleetctl/received/projects/projects." + s + "x", // not a stamp
		".fleetctl/diverged/" + s,                         // no share
		".fleetctl/diverged/projects." + s + "/inner",
		".fleetctl/other/projects/projects." + s,
		"projects.before-epoch-",
		"projects.before-epoch-02",
		"projects.before-epoch--1",
		".before-epoch-2",
		"dir/projects.before-epoch-2",
		"projects." + s,
	} {
		if got, ok := reconcile.ClassifyCopy(rel); ok {
			t.Errorf("ClassifyCopy(%q) = %+v; want no copy", rel, got)
		}
	}
	if got := reconcile.BeforeEpochPath("/tank", "projects", 3); got != "/tank/projects.before-epoch-3" {
		t.Errorf("BeforeEpochPath = %q", got)
	}
}

// TestListCopies: a pool's copies with their pool, absolute path, time
// (the stamp; a before-epoch copy's creation time), read-only flag and
// sizes where the pool has quotas, of one share or of all; a pool that is
// not a mounted btrfs filesystem is an error.
func TestListCopies(t *testing.T) {
	ctx := t.Context()
	d := reconciletest.NewFakeDriver()
	d.AddPool("/tank")
	pool := schema.Pool{Name: "tank", Path: "/tank"}
	const s = "20261125T084600Z"
	mustDo(t, d.CreateSubvolume(ctx, "/tank/projects"))
	mustDo(t, d.CreateSubvolume(ctx, "/tank/docs"))
	for _, dir := range []string{"snapshots/projects", "replication/projects", "received/docs", "diverged"} {
		mustDo(t, d.MkdirAll(ctx, "/tank/.fleetctl/"+dir))
	}
	for _, snap := range []string{
		"/tank/.fleetctl/snapshots/projects/projects." + s,
		"/tank/.fleetctl/snapshots/projects/projects.final." + s,
		"/tank/.fleetctl/replication/projects/" + s,
		"/tank/.fleetctl/received/docs/docs." + s,
		"/tank/.fleetctl/received/docs/" + s, // staging: not listed
		"/tank/.fleetctl/diverged/projects." + s,
	} {
		mustDo(t, d.Snapshot(ctx, "/tank/projects", snap, true))
	}
	mustDo(t, d.Snapshot(ctx, "/tank/projects", "/tank/projects.before-epoch-2", false))
	created, err := d.Created(ctx, "/tank/projects.before-epoch-2")
	mustDo(t, err)

	all, err := reconcile.ListCopies(ctx, d, pool, "")
	mustDo(t, err)
	var got []string
	for _, c := range all {
		if c.Pool != "tank" || !strings.HasPrefix(c.Path, "/tank/") || c.Referenced != nil || c.Exclusive != nil {
			t.Errorf("copy %+v: want pool tank, an absolute path and no sizes (quotas off)", c)
		}
		if want := c.Kind != reconcile.CopyBeforeEpoch; c.ReadOnly != want {
			t.Errorf("copy %s: read-only %v, want %v", c.Path, c.ReadOnly, want)
		}
		tm := c.Time.UTC().Format(reconcile.StampFormat)
		if c.Kind == reconcile.CopyBeforeEpoch && !c.Time.Equal(created) {
			t.Errorf("before-epoch copy: time %v, want its creation time %v", c.Time, created)
		}
		got = append(got, string(c.Kind)+" "+c.Share+" "+filepath.Base(c.Path)+" "+tm)
	}
	slices.Sort(got)
	want := []string{
		"before-epoch projects projects.before-epoch-2 " + created.UTC().Format(reconcile.StampFormat),
		"diverged projects projects." + s + " " + s,
		"final projects projects.final." + s + " " + s,
		"received docs docs." + s + " " + s,
		"replication projects " + s + " " + s,
		"scheduled projects projects." + s + " " + s,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("copies:\n got %q\nwant %q", got, want)
	}

	docs, err := reconcile.ListCopies(ctx, d, pool, "docs")
	mustDo(t, err)
	if len(docs) != 1 || docs[0].Kind != reconcile.CopyReceived {
		t.Fatalf("copies of docs: want the received one, got %+v", docs)
	}

	mustDo(t, d.EnableQuota(ctx, "/tank"))
	mustDo(t, d.SetUsage("/tank/.fleetctl/received/docs/docs."+s, 5<<20, 1<<20))
	docs, err = reconcile.ListCopies(ctx, d, pool, "docs")
	mustDo(t, err)
	if len(docs) != 1 || docs[0].Referenced == nil || *docs[0].Referenced != 5<<20 || docs[0].Exclusive == nil || *docs[0].Exclusive != 1<<20 {
		t.Fatalf("copies of docs with quotas: want referenced 5MiB, exclusive 1MiB, got %+v", docs)
	}

	if _, err := reconcile.ListCopies(ctx, d, schema.Pool{Name: "gone", Path: "/gone"}, ""); err == nil || !strings.Contains(err.Error(), "pool gone") {
		t.Fatalf("a pool that is not mounted: want an error naming it, got %v", err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
