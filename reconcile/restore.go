package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// Restoring from a copy of a share (fleetctl restore) runs on the
// appliance that holds the copy, in one of three ways:
//
//   - files: a path inside the copy is copied out to a directory on that
//     appliance (cp --reflink=auto -a, so btrfs shares the extents when
//     the directory is on the same filesystem);
//   - a new share: a writable snapshot of the copy at <pool>/<name>,
//     which becomes a share of the spec when the user adds it there;
//   - in place (RestoreInPlace): the share itself becomes a writable
//     snapshot of the copy, its current state kept read-only beside its
//     snapshots first.
//
// None of them touches the copy; only in place touches the share.

// SideRestore is the trail side of a restore, recorded by the appliance
// that holds the copy restored from.
const SideRestore = "restore"

// ErrRestoreInput means a restore was refused for its input: a path that
// leaves the copy, a target that exists, an invalid name. Nothing was
// changed.
var ErrRestoreInput = errors.New("refused")

// RestoreSource is the absolute path in the copy at snap that the path p
// (relative to the copy; "" or "." is all of it) names, after checking
// that p stays inside the copy: no "..", no absolute path, and no
// symbolic link on the way (or at its end) that leads out of it. It
// fails, wrapping ErrRestoreInput, when p does not exist.
func RestoreSource(snap, p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: the path holds a NUL byte", ErrRestoreInput)
	}
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: --path %s: give the path relative to the snapshot, like docs/report.txt", ErrRestoreInput, p)
	}
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: --path %s leaves the snapshot (..)", ErrRestoreInput, p)
		}
	}
	rel := filepath.Clean(p)
	if rel == "." {
		return snap, nil
	}
	root, err := filepath.EvalSymlinks(snap)
	if err != nil {
		return "", err
	}
	src := filepath.Join(snap, rel)
	if _, err := os.Lstat(src); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: --path %s: no such file or directory in the snapshot", ErrRestoreInput, p)
		}
		return "", err
	}
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return "", fmt.Errorf("%w: --path %s: a symbolic link on the way leads nowhere inside the snapshot: %v", ErrRestoreInput, p, err)
	}
	if !within(root, real) {
		return "", fmt.Errorf("%w: --path %s leaves the snapshot through a symbolic link (to %s)", ErrRestoreInput, p, real)
	}
	return src, nil
}

// within says whether path is root or below it.
func within(root, path string) bool {
	r, err := filepath.Rel(root, path)
	return err == nil && r != ".." && !strings.HasPrefix(r, "../")
}

// CheckRestoreDir checks that dir may receive restored files: an absolute
// path that does not exist or is an empty directory, outside the copy at
// snap ("" when the copy is on another appliance).
func CheckRestoreDir(snap, dir string) error {
	if !filepath.IsAbs(dir) || strings.ContainsRune(dir, 0) {
		return fmt.Errorf("%w: --to %s: want an absolute path on the appliance", ErrRestoreInput, dir)
	}
	dir = filepath.Clean(dir)
	if snap != "" && within(snap, dir) {
		return fmt.Errorf("%w: --to %s is inside the snapshot", ErrRestoreInput, dir)
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%w: --to %s exists and is not a directory", ErrRestoreInput, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%w: --to %s exists and is not empty", ErrRestoreInput, dir)
	}
	return nil
}

// RestoreTarget is where RestoreFiles puts src: dir itself for the whole
// copy, dir/<base of src> for a path in it.
func RestoreTarget(snap, src, dir string) string {
	if src == snap {
		return dir
	}
	return filepath.Join(dir, filepath.Base(src))
}

// RestoreFiles copies src (RestoreSource's answer) out of the copy at snap
// into dir (checked with CheckRestoreDir), made when missing, with
// cp --reflink=auto -a: owners, modes, times and links kept. It returns
// what it copied, relative to dir, sorted, at most max entries (and
// whether there were more).
func RestoreFiles(ctx context.Context, snap, src, dir string, max int) ([]string, bool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, err
	}
	from := src
	if src == snap {
		from = src + "/."
	}
	out, err := exec.CommandContext(ctx, "cp", "--reflink=auto", "-a", "--", from, RestoreTarget(snap, src, dir)).CombinedOutput()
	if err != nil {
		return nil, false, fmt.Errorf("cp: %v: %s", err, strings.TrimSpace(string(out)))
	}
	var copied []string
	more := false
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if len(copied) == max {
			more = true
			return fs.SkipAll
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			rel += "/"
		}
		copied = append(copied, rel)
		return nil
	})
	return copied, more, err
}

// CheckRestoreAs checks that name may become a new share in the pool at
// pool: a valid share name that no share of spec has, and nothing at
// <pool>/<name>. It returns that path.
func CheckRestoreAs(spec *schema.Spec, pool, name string) (string, error) {
	if !schema.ValidShareName(name) {
		return "", fmt.Errorf("%w: --as %q is not a valid share name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64", ErrRestoreInput, name)
	}
	if _, ok := ClassifyCopy(name); ok {
		return "", fmt.Errorf("%w: --as %q is named like a copy fleetctl sets aside", ErrRestoreInput, name)
	}
	if spec != nil {
		if sh := spec.Share(name); sh != nil {
			return "", fmt.Errorf("%w: --as %s: the spec already has a share %s (on %s)", ErrRestoreInput, name, name, sh.Appliance)
		}
	}
	dst := filepath.Join(pool, name)
	if _, err := os.Lstat(dst); err == nil {
		return "", fmt.Errorf("%w: --as %s: %s exists", ErrRestoreInput, name, dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return dst, nil
}

// ShareYAML is the item to add under shares: in fleet.yaml for a share
// restored as name on appliance's pool.
func ShareYAML(name, appliance, pool string) string {
	return fmt.Sprintf("  - name: %s\n    appliance: %s\n    pool: %s\n", name, appliance, pool)
}

// beforeRestoreInfix sets the name of the copy an in-place restore keeps
// of the share it replaces apart: <share>.before-restore.<stamp>.
const beforeRestoreInfix = ".before-restore."

// BeforeRestorePath is where an in-place restore at t keeps the share it
// replaces: <pool>/.fleetctl/snapshots/<share>/<share>.before-restore.<stamp>,
// beside the share's snapshots, where retention never prunes it (it
// prunes only <share>.<stamp>).
func BeforeRestorePath(pool, share string, t time.Time) string {
	return filepath.Join(pool, SnapshotDir, share, share+beforeRestoreInfix+t.UTC().Format(StampFormat))
}

// parseBeforeRestoreName returns the time in a before-restore copy's name.
func parseBeforeRestoreName(share, name string) (time.Time, bool) {
	stamp, ok := strings.CutPrefix(name, share+beforeRestoreInfix)
	if !ok {
		return time.Time{}, false
	}
	return parseStamp(stamp)
}

// RestoreInPlace makes the share at share a writable snapshot of the copy
// at snap, keeping what it was at before (BeforeRestorePath):
//
//  1. the share is renamed to before (an atomic rename within the pool:
//     nothing is copied, nothing is lost, a file open in it stays open in
//     before),
//  2. before is made read-only,
//  3. a writable snapshot of snap is made at share.
//
// When step 2 or 3 fails, it puts the share back as it was. The caller
// keeps everything else that could touch share away while it runs (the
// reconciler, a replication run, the lease's fence: see the agent), and
// has checked that snap is a copy of this share in the same pool.
func RestoreInPlace(ctx context.Context, d Driver, share, snap, before string) error {
	if err := d.MkdirAll(ctx, filepath.Dir(before)); err != nil {
		return err
	}
	if err := d.Rename(ctx, share, before); err != nil {
		return fmt.Errorf("set the current state aside: %w", err)
	}
	err := d.SetReadOnly(ctx, before, true)
	if err == nil {
		err = d.Snapshot(ctx, snap, share, false)
		if err != nil {
			err = fmt.Errorf("snapshot %s as %s: %w", snap, share, err)
		}
	} else {
		err = fmt.Errorf("make %s read-only: %w", before, err)
	}
	if err == nil {
		return nil
	}
	// Back as it was: at its path (a failed snapshot makes nothing
	// there), then writable again (a read-only subvolume renames).
	if back := d.Rename(ctx, before, share); back != nil {
		return fmt.Errorf("%w; and putting the share back failed too, so it is at %s: %w", err, before, back)
	}
	if back := d.SetReadOnly(ctx, share, false); back != nil {
		return fmt.Errorf("%w; the share is back at %s but still read-only: %w", err, share, back)
	}
	return fmt.Errorf("%w (the share was put back as it was)", err)
}
