package reconcile_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/reconciletest"
	"github.com/fleetctl/fleetctl/schema"
)

// restoreTree makes a copy-like tree: snap/docs/a.txt, snap/top.txt, a
// link inside (docs/in -> ../top.txt), links out (out -> /etc, up ->
// ../outside) and a sibling directory outside.
func restoreTree(t *testing.T) (snap, outside string) {
	t.Helper()
	base := t.TempDir()
	snap, outside = filepath.Join(base, "snap"), filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(snap, "docs"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, s := range map[string]string{"docs/a.txt": "a\n", "top.txt": "top\n"} {
		if err := os.WriteFile(filepath.Join(snap, p), []byte(s), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{"docs/in": "../top.txt", "out": "/etc", "up": "../outside", "dangling": "nowhere"} {
		if err := os.Symlink(to, filepath.Join(snap, link)); err != nil {
			t.Fatal(err)
		}
	}
	return snap, outside
}

// TestRestoreSource: a path inside the copy is accepted, also through a
// symbolic link that stays inside; "..", absolute paths, links that lead
// out of the copy and missing paths are refused as input.
func TestRestoreSource(t *testing.T) {
	snap, _ := restoreTree(t)
	for p, want := range map[string]string{
		"":            snap,
		".":           snap,
		"docs/a.txt":  filepath.Join(snap, "docs/a.txt"),
		"docs/":       filepath.Join(snap, "docs"),
		"./top.txt":   filepath.Join(snap, "top.txt"),
		"docs/in":     filepath.Join(snap, "docs/in"),
		"docs//a.txt": filepath.Join(snap, "docs/a.txt"),
	} {
		got, err := reconcile.RestoreSource(snap, p)
		if err != nil || got != want {
			t.Errorf("RestoreSource(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for p, why := range map[string]string{
		"../outside/secret": "leaves the snapshot (..)",
		"docs/../../x":      "leaves the snapshot (..)",
		"/etc/passwd":       "relative to the snapshot",
		"out":               "through a symbolic link",
		"out/passwd":        "through a symbolic link",
		"up/secret":         "through a symbolic link",
		"missing.txt":       "no such file or directory",
		"dangling":          "leads nowhere",
		"a\x00b":            "NUL",
	} {
		_, err := reconcile.RestoreSource(snap, p)
		if !errors.Is(err, reconcile.ErrRestoreInput) || !strings.Contains(err.Error(), why) {
			t.Errorf("RestoreSource(%q) = %v; want an input error saying %q", p, err, why)
		}
	}
}

// TestCheckRestoreDir: a missing or empty directory may receive files; a
// relative path, a file, a directory with something in it and one inside
// the copy may not.
func TestCheckRestoreDir(t *testing.T) {
	snap, outside := restoreTree(t)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{empty, filepath.Join(outside, "new"), filepath.Join(t.TempDir(), "a/b/c")} {
		if err := reconcile.CheckRestoreDir(snap, dir); err != nil {
			t.Errorf("CheckRestoreDir(%s) = %v; want nil", dir, err)
		}
	}
	for dir, why := range map[string]string{
		"relative/dir":                     "absolute path",
		outside:                            "not empty",
		filepath.Join(outside, "secret"):   "not a directory",
		filepath.Join(snap, "docs"):        "inside the snapshot",
		filepath.Join(snap, "new-in-snap"): "inside the snapshot",
	} {
		err := reconcile.CheckRestoreDir(snap, dir)
		if !errors.Is(err, reconcile.ErrRestoreInput) || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckRestoreDir(%s) = %v; want an input error saying %q", dir, err, why)
		}
	}
}

// TestRestoreFiles: one file lands in DIR under its name with its mode;
// a directory with everything in it; the whole copy as DIR's contents,
// links copied as links.
func TestRestoreFiles(t *testing.T) {
	snap, _ := restoreTree(t)
	ctx := context.Background()

	dir := filepath.Join(t.TempDir(), "one")
	src, err := reconcile.RestoreSource(snap, "docs/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, more, err := reconcile.RestoreFiles(ctx, snap, src, dir, 100)
	if err != nil || more || !slices.Equal(got, []string{"a.txt"}) {
		t.Fatalf("RestoreFiles(docs/a.txt) = %q, %v, %v", got, more, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "a\n" {
		t.Errorf("restored a.txt = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a.txt")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("restored a.txt's mode = %v, %v; want 0640", fi.Mode(), err)
	}

	dir = filepath.Join(t.TempDir(), "docs")
	got, _, err = reconcile.RestoreFiles(ctx, snap, filepath.Join(snap, "docs"), dir, 100)
	if err != nil || !slices.Equal(got, []string{"docs/", "docs/a.txt", "docs/in"}) {
		t.Fatalf("RestoreFiles(docs) = %q, %v", got, err)
	}
	if to, err := os.Readlink(filepath.Join(dir, "docs/in")); err != nil || to != "../top.txt" {
		t.Errorf("docs/in = %q, %v; want the link itself", to, err)
	}

	dir = filepath.Join(t.TempDir(), "all")
	got, more, err = reconcile.RestoreFiles(ctx, snap, snap, dir, 3)
	if err != nil || !more || len(got) != 3 {
		t.Fatalf("RestoreFiles(all, max 3) = %q, %v, %v; want 3 and more", got, more, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "top.txt")); err != nil || string(b) != "top\n" {
		t.Errorf("restored top.txt = %q, %v", b, err)
	}
}

// TestCheckRestoreAs: a new share's name must be valid, not the spec's
// and not taken in the pool; ShareYAML is the item to add.
func TestCheckRestoreAs(t *testing.T) {
	pool := t.TempDir()
	if err := os.Mkdir(filepath.Join(pool, "taken"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &schema.Spec{Shares: []schema.Share{{Name: "projects", Appliance: "n1", Pool: "tank"}}}
	if got, err := reconcile.CheckRestoreAs(spec, pool, "projects-old"); err != nil || got != filepath.Join(pool, "projects-old") {
		t.Errorf("CheckRestoreAs(projects-old) = %q, %v", got, err)
	}
	for name, why := range map[string]string{
		"projects":                "already has a share projects",
		"taken":                   "exists",
		"../x":                    "not a valid share name",
		".fleetctl":               "not a valid share name",
		"":                        "not a valid share name",
		"projects.before-epoch-3": "named like a copy",
	} {
		_, err := reconcile.CheckRestoreAs(spec, pool, name)
		if !errors.Is(err, reconcile.ErrRestoreInput) || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckRestoreAs(%q) = %v; want an input error saying %q", name, err, why)
		}
	}
	want := "  - name: old\n    appliance: n2\n    pool: tank\n"
	if got := reconcile.ShareYAML("old", "n2", "tank"); got != want {
		t.Errorf("ShareYAML = %q; want %q", got, want)
	}
}

// TestRestoreInPlace: the share becomes a writable snapshot of the copy
// and its old self a read-only before-restore copy that ClassifyCopy
// names; when the read-only flag or the snapshot fails, the share is put
// back as it was, writable, at its path, and nothing is left at before.
func TestRestoreInPlace(t *testing.T) {
	ctx := context.Background()
	const pool = "/pools/tank"
	share := pool + "/projects"
	snap := pool + "/.fleetctl/snapshots/projects/projects.20261125T084600Z"
	before := reconcile.BeforeRestorePath(pool, "projects", time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC))
	if want := pool + "/.fleetctl/snapshots/projects/projects.before-restore.20261129T100000Z"; before != want {
		t.Fatalf("BeforeRestorePath = %s, want %s", before, want)
	}
	if n, ok := reconcile.ClassifyCopy(".fleetctl/snapshots/projects/projects.before-restore.20261129T100000Z"); !ok || n.Kind != reconcile.CopyBeforeRestore || n.Share != "projects" || !n.Stamp.Equal(time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("ClassifyCopy(before-restore) = %+v, %v", n, ok)
	}
	setup := func(t *testing.T) *reconciletest.FakeDriver {
		d := reconciletest.NewFakeDriver()
		d.AddPool(pool)
		for _, err := range []error{
			d.CreateSubvolume(ctx, share),
			d.MkdirAll(ctx, filepath.Dir(snap)),
			d.Snapshot(ctx, share, snap, true),
			d.Touch(share),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	t.Run("ok", func(t *testing.T) {
		d := setup(t)
		old, _ := d.Lookup(share)
		if err := reconcile.RestoreInPlace(ctx, d, share, snap, before); err != nil {
			t.Fatal(err)
		}
		kept, ok := d.Lookup(before)
		if !ok || !kept.ReadOnly || kept.UUID != old.UUID {
			t.Errorf("before-restore copy = %+v, %v; want the old share (%s), read-only", kept, ok, old.UUID)
		}
		src, _ := d.Lookup(snap)
		now, ok := d.Lookup(share)
		if !ok || now.ReadOnly || now.ParentUUID != src.UUID {
			t.Errorf("share = %+v, %v; want a writable snapshot of %s", now, ok, src.UUID)
		}
	})
	for _, op := range []string{"SetReadOnly", "Snapshot"} {
		t.Run(op+" fails", func(t *testing.T) {
			d := setup(t)
			old, _ := d.Lookup(share)
			path := before
			if op == "Snapshot" {
				path = share
			}
			d.Fail(op, path, errors.New("boom"))
			err := reconcile.RestoreInPlace(ctx, d, share, snap, before)
			if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "put back as it was") {
				t.Fatalf("err = %v; want boom, put back", err)
			}
			now, ok := d.Lookup(share)
			if !ok || now.UUID != old.UUID || now.ReadOnly {
				t.Errorf("share = %+v, %v; want the old share (%s), writable", now, ok, old.UUID)
			}
			if _, ok := d.Lookup(before); ok {
				t.Errorf("%s left behind", before)
			}
		})
	}
}

// TestTarRoundTrip: WriteTar of a path and of the whole copy, extracted
// by ExtractTar, gives what RestoreFiles gives: the same files, links
// and modes, named the same.
func TestTarRoundTrip(t *testing.T) {
	ctx := context.Background()
	snap, _ := restoreTree(t)
	if err := os.Chmod(filepath.Join(snap, "top.txt"), 0o604); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "docs", "top.txt"} {
		src, err := reconcile.RestoreSource(snap, p)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := reconcile.WriteTar(ctx, snap, src, &buf); err != nil {
			t.Fatalf("WriteTar(%q): %v", p, err)
		}
		want := filepath.Join(t.TempDir(), "want")
		wantList, _, err := reconcile.RestoreFiles(ctx, snap, src, want, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := filepath.Join(t.TempDir(), "got")
		gotList, more, n, err := reconcile.ExtractTar(ctx, &buf, got, 100)
		if err != nil || more || n == 0 {
			t.Fatalf("ExtractTar(%q) = %v, %v, %d, %v", p, gotList, more, n, err)
		}
		slices.Sort(gotList)
		if !slices.Equal(gotList, wantList) {
			t.Errorf("%q: extracted %v, cp gives %v", p, gotList, wantList)
		}
		for _, rel := range wantList {
			a, errA := os.Lstat(filepath.Join(want, rel))
			b, errB := os.Lstat(filepath.Join(got, rel))
			if errA != nil || errB != nil || a.Mode() != b.Mode() || (a.Mode().IsRegular() && (a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()))) {
				t.Errorf("%q: %s: cp %v %v, extracted %v %v", p, rel, a, errA, b, errB)
			}
		}
	}
}

// TestExtractTarRefusesEscapes: a crafted stream cannot write outside the
// directory: "..", absolute names, a path through a link out of it, a
// name that exists, a device.
func TestExtractTarRefusesEscapes(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	for name, entries := range map[string][]tar.Header{
		"dotdot":   {{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		"absolute": {{Name: outside + "/evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		"via link": {{Name: "out", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "out/evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		"twice":    {{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}, {Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}},
		"device":   {{Name: "null", Typeflag: tar.TypeChar, Mode: 0o644, Devmajor: 1, Devminor: 3}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "to")
		if _, _, _, err := reconcile.ExtractTar(ctx, &buf, dir, 10); err == nil {
			t.Errorf("%s: extracted", name)
		}
		if ents, _ := os.ReadDir(outside); len(ents) > 0 {
			t.Fatalf("%s: wrote outside: %v", name, ents)
		}
	}
}
