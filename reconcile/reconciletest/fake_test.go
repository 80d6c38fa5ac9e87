package reconciletest

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
)

// disk is a FakeDriver with /tank and /pool2 mounted and helpers to lay out
// what a test starts from (the part of reconcile's test disk these tests use).
type disk struct {
	*FakeDriver
	t testing.TB
}

func newDisk(t testing.TB) disk {
	d := NewFakeDriver()
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

// TestFakeDriverContract checks that the fake refuses what btrfs refuses, so
// that tests built on it do not pass against a kinder world than the real one.
func TestFakeDriverContract(t *testing.T) {
	ctx := context.Background()
	d := newDisk(t)
	d.subvol("/tank/a")

	mustFail := func(what string, err error, says string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s succeeded", what)
		} else if !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v; want it to say %q", what, err, says)
		}
	}
	mustFail("create with a missing parent", d.CreateSubvolume(ctx, "/tank/x/y"), "create subvolume /tank/x/y")
	mustFail("create over a subvolume", d.CreateSubvolume(ctx, "/tank/a"), "exists")
	if err := d.CreateSubvolume(ctx, "/tank/x/y"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("create with a missing parent: %v; want fs.ErrNotExist", err)
	}
	mustFail("create off any pool", d.CreateSubvolume(ctx, "/elsewhere/a"), "not on a mounted btrfs filesystem")
	mustFail("create with a relative path", d.CreateSubvolume(ctx, "tank/b"), "not an absolute path")

	d.ok(d.MkdirAll(ctx, "/tank/dir/deeper"))
	mustFail("create over a directory", d.CreateSubvolume(ctx, "/tank/dir"), "exists")
	mustFail("delete a directory", d.DeleteSubvolume(ctx, "/tank/dir"), "not a subvolume")
	mustFail("delete nothing", d.DeleteSubvolume(ctx, "/tank/nothing"), "does not exist")
	mustFail("delete the top level", d.DeleteSubvolume(ctx, "/tank"), "top-level")

	d.subvol("/tank/a/inner")
	mustFail("delete a subvolume holding one", d.DeleteSubvolume(ctx, "/tank/a"), "holds nested subvolumes (a/inner)")

	// Snapshots: read-only, parent UUID, nested subvolumes become directories.
	d.ok(d.MkdirAll(ctx, "/tank/a/docs"))
	d.ok(d.MkdirAll(ctx, "/tank/snaps"))
	d.ok(d.Snapshot(ctx, "/tank/a", "/tank/snaps/a1", true))
	a, _ := d.Lookup("/tank/a")
	s, ok := d.Lookup("/tank/snaps/a1")
	if !ok || !s.ReadOnly || s.ParentUUID != a.UUID || s.UUID == a.UUID || s.ID <= a.ID {
		t.Errorf("snapshot %+v of %+v", s, a)
	}
	if _, ok := d.Lookup("/tank/snaps/a1/inner"); ok {
		t.Error("a nested subvolume was snapshotted as a subvolume")
	}
	d.ok(d.MkdirAll(ctx, "/tank/snaps/a1/inner")) // exists as a directory already: no-op
	mustFail("create in a read-only snapshot", d.CreateSubvolume(ctx, "/tank/snaps/a1/docs/new"), "read-only")
	mustFail("mkdir in a read-only snapshot", d.MkdirAll(ctx, "/tank/snaps/a1/new"), "read-only")
	mustFail("snapshot a directory", d.Snapshot(ctx, "/tank/dir", "/tank/snaps/d", true), "not a subvolume")
	mustFail("snapshot across pools", d.Snapshot(ctx, "/tank/a", "/pool2/a", true), "different filesystems")
	mustFail("snapshot over a snapshot", d.Snapshot(ctx, "/tank/a", "/tank/snaps/a1", true), "exists")
	d.ok(d.SetReadOnly(ctx, "/tank/snaps/a1", false))
	d.ok(d.CreateSubvolume(ctx, "/tank/snaps/a1/docs/new"))
	d.ok(d.DeleteSubvolume(ctx, "/tank/snaps/a1/docs/new"))
	d.ok(d.DeleteSubvolume(ctx, "/tank/snaps/a1"))

	// Quotas.
	if _, err := d.Qgroups(ctx, "/tank"); err == nil {
		t.Error("qgroups listed with quotas disabled")
	}
	mustFail("set a quota with quotas disabled", d.SetQuota(ctx, "/tank/a", 1<<30), "quotas not enabled")
	d.ok(d.EnableQuota(ctx, "/tank"))
	if on, _ := d.QuotaEnabled(ctx, "/tank"); !on {
		t.Error("quotas not enabled after EnableQuota")
	}
	if on, _ := d.QuotaEnabled(ctx, "/pool2"); on {
		t.Error("quotas enabled on the other pool")
	}
	d.ok(d.SetQuota(ctx, "/tank/a", 1<<30))
	mustFail("set a quota on a directory", d.SetQuota(ctx, "/tank/dir", 1<<30), "not a subvolume")
	qg, err := d.Qgroups(ctx, "/tank")
	d.ok(err)
	if qg[a.ID].MaxReferenced != 1<<30 || qg[a.ID].Referenced == 0 {
		t.Errorf("qgroup of a: %+v", qg[a.ID])
	}

	// Listing: by ID, relative to the path asked about.
	subs, err := d.Subvolumes(ctx, "/tank")
	d.ok(err)
	var paths []string
	for i, sv := range subs {
		paths = append(paths, sv.Path)
		if i > 0 && sv.ID <= subs[i-1].ID {
			t.Errorf("subvolumes not in ID order: %v", subs)
		}
	}
	if got, want := strings.Join(paths, " "), "a a/inner"; got != want {
		t.Errorf("subvolumes %q; want %q", got, want)
	}
	subs, err = d.Subvolumes(ctx, "/tank/a")
	d.ok(err)
	if len(subs) != 1 || subs[0].Path != "inner" {
		t.Errorf("subvolumes below /tank/a: %+v", subs)
	}

	if ok, err := d.IsBtrfs(ctx, "/tank/dir"); !ok || err != nil {
		t.Errorf("IsBtrfs(/tank/dir) = %t, %v", ok, err)
	}
	if ok, err := d.IsBtrfs(ctx, "/mnt"); ok || err != nil {
		t.Errorf("IsBtrfs(/mnt) = %t, %v", ok, err)
	}

	// Deleting a subvolume takes its directories with it.
	d.ok(d.DeleteSubvolume(ctx, "/tank/a/inner"))
	d.ok(d.DeleteSubvolume(ctx, "/tank/a"))
	d.ok(d.CreateSubvolume(ctx, "/tank/a"))
	d.ok(d.CreateSubvolume(ctx, "/tank/a/docs"))
}

func TestFakeDriverCountsMutationsAndFails(t *testing.T) {
	ctx := context.Background()
	d := newDisk(t)
	if _, err := d.Subvolumes(ctx, "/tank"); err != nil {
		t.Fatal(err)
	}
	if n := d.Mutations(); n != 0 {
		t.Fatalf("reads counted as %d mutations", n)
	}
	d.subvol("/tank/a")
	_ = d.CreateSubvolume(ctx, "/tank/a") // fails: not counted
	if n := d.Mutations(); n != 1 {
		t.Fatalf("%d mutations; want 1", n)
	}

	boom := errors.New("boom")
	d.Fail("DeleteSubvolume", "/tank/a", boom)
	if err := d.DeleteSubvolume(ctx, "/tank/a"); !errors.Is(err, boom) || !strings.Contains(err.Error(), "delete subvolume /tank/a") {
		t.Errorf("injected failure: %v", err)
	}
	d.Fail("DeleteSubvolume", "/tank/a", nil)
	d.ok(d.DeleteSubvolume(ctx, "/tank/a"))

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.CreateSubvolume(cancelled, "/tank/b"); !errors.Is(err, context.Canceled) {
		t.Errorf("create with a cancelled context: %v", err)
	}
	if got, want := strings.Join(d.Log(), "; "), "CreateSubvolume /tank/a; DeleteSubvolume /tank/a"; got != want {
		t.Errorf("log %q; want %q", got, want)
	}
}

func TestFakeDriverRename(t *testing.T) {
	ctx := context.Background()
	d := newDisk(t)
	d.subvol("/tank/a")
	d.ok(d.MkdirAll(ctx, "/tank/a/docs"))
	d.ok(d.MkdirAll(ctx, "/tank/dir"))
	d.ok(d.Snapshot(ctx, "/tank/a", "/tank/dir/s", true))
	a, _ := d.Lookup("/tank/a")

	d.ok(d.Rename(ctx, "/tank/a", "/tank/b"))
	if b, ok := d.Lookup("/tank/b"); !ok || b.UUID != a.UUID || b.Path != "b" {
		t.Errorf("renamed subvolume: %+v", b)
	}
	if _, ok := d.Lookup("/tank/a"); ok {
		t.Error("the old name is still there")
	}
	if err := d.CreateSubvolume(ctx, "/tank/b/docs/x"); err != nil {
		t.Errorf("the renamed subvolume lost its directory: %v", err)
	}
	d.ok(d.Rename(ctx, "/tank/dir/s", "/tank/dir/t")) // a read-only subvolume, in a writable directory
	for _, c := range []struct{ from, to, says string }{
		{"/tank/b", "/tank/dir", "exists"},
		{"/tank/b", "/pool2/b", "different filesystems"},
		{"/tank/nothing", "/tank/c", "does not exist"},
		{"/tank/b", "/tank/b/docs/b", "into itself"},
		{"/tank/dir/t/docs", "/tank/docs", "read-only"},
	} {
		if err := d.Rename(ctx, c.from, c.to); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Rename(%s, %s) = %v; want it to say %q", c.from, c.to, err, c.says)
		}
	}
	if err := d.Send(ctx, "/tank/dir/t", "", io.Discard); !errors.Is(err, errNotModelled) {
		t.Errorf("Send on the fake: %v", err)
	}
	if err := d.Receive(ctx, "/tank/dir", strings.NewReader("")); !errors.Is(err, errNotModelled) {
		t.Errorf("Receive on the fake: %v", err)
	}
}
