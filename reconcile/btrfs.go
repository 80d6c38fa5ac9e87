package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleetctl/fleetctl/reconcile/looppool"
)

// Errors of the btrfs driver that callers may test with errors.Is.
var (
	// ErrNotSubvolume means a path that must be a subvolume is not one.
	ErrNotSubvolume = errors.New("not a btrfs subvolume")
	// ErrQuotaDisabled means the pool's quotas are not enabled, so it has no
	// qgroups to read.
	ErrQuotaDisabled = errors.New("quotas are not enabled")
)

const (
	// btrfsSuperMagic is BTRFS_SUPER_MAGIC, statfs's f_type of btrfs.
	btrfsSuperMagic = 0x9123683e
	// subvolumeRootIno is BTRFS_FIRST_FREE_OBJECTID: the inode number of the
	// root directory of every subvolume, and of no other directory.
	subvolumeRootIno = 256
	// topLevelID is BTRFS_FS_TREE_OBJECTID, the top-level subvolume.
	topLevelID = 5
	// fsTreePrefix is what "btrfs subvolume list -a" puts before the path of
	// a subvolume whose parent is not the subvolume it was asked about.
	fsTreePrefix = "<FS_TREE>/"
	// waitDelay bounds how long a killed command may keep its output open.
	waitDelay = 5 * time.Second
	// maxStderr is how much of a command's stderr an error message keeps.
	maxStderr = 2048
)

// Btrfs is the Driver that speaks to btrfs, by running btrfs-progs as
// Rockstor and btrbk do for every change and for send and receive. The
// reads a reconcile run makes of each pool (Subvolumes, QuotaEnabled,
// Qgroups) run no command: they use the kernel's ioctls directly, the ones
// btrfs-progs would (btrfsioctl.go), so a run that changes nothing starts no
// process. Every command runs with LC_ALL=C (its messages are parsed), ends
// when its context does, and reads nothing from stdin.
//
// The zero value runs "btrfs" from PATH. A Btrfs is safe for concurrent use
// once its fields are set.
type Btrfs struct {
	binary string

	// Observer, when set, is called just before each change the driver
	// makes, with the operation and the path it changes: "create",
	// "delete", "snapshot" (the destination), "set-ro", "enable-quota" (the
	// pool), "set-quota", "mkdir", "rename" (the new path) and "receive"
	// (the directory). Send changes nothing and is not observed. Reads are never observed, nor are
	// calls refused before anything ran, nor a MkdirAll of a directory that
	// exists; so a test can assert that a run changed nothing.
	Observer func(op, path string)
}

var _ Driver = (*Btrfs)(nil)

// NewBtrfs returns a driver that runs the btrfs-progs command binary, a
// path or a name looked up in PATH; "" means "btrfs".
func NewBtrfs(binary string) *Btrfs {
	return &Btrfs{binary: binary}
}

// CommandError is a btrfs-progs command that failed. Its message is the
// command line, why it failed and what it wrote to stderr:
//
//	btrfs subvolume delete /tank/x: exit status 1: ERROR: Could not destroy subvolume/snapshot: Directory not empty
type CommandError struct {
	// Args is the command line; Args[0] is the binary.
	Args []string
	// Stderr is what the command wrote to stderr, trimmed, its lines joined
	// with "; ".
	Stderr string
	// Err is why it failed: an *exec.ExitError, or why it could not start.
	Err error
	// Killed is the context's error when the command was stopped because
	// its context ended, nil otherwise.
	Killed error
}

func (e *CommandError) Error() string {
	var b strings.Builder
	b.WriteString(commandLine(e.Args))
	b.WriteString(": ")
	if e.Killed != nil {
		fmt.Fprintf(&b, "killed (%v)", e.Killed)
	} else {
		b.WriteString(e.Err.Error())
	}
	if e.Stderr != "" {
		b.WriteString(": ")
		b.WriteString(e.Stderr)
	}
	return b.String()
}

// Unwrap gives the exec error and, for a killed command, the context's
// error, so errors.Is(err, context.DeadlineExceeded) holds.
func (e *CommandError) Unwrap() []error {
	if e.Killed != nil {
		return []error{e.Err, e.Killed}
	}
	return []error{e.Err}
}

// commandLine renders args as a shell would need them, quoting the ones
// with spaces or other special characters.
func commandLine(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
		}) {
			quoted[i] = a
			continue
		}
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

// tidyStderr makes a command's stderr fit in one line of an error message.
func tidyStderr(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s = strings.Join(lines, "; ")
	if len(s) > maxStderr {
		s = s[:maxStderr] + "…"
	}
	return s
}

func (b *Btrfs) bin() string {
	if b.binary == "" {
		return "btrfs"
	}
	return b.binary
}

// run runs btrfs with args and returns its stdout; a failure is a
// *CommandError.
func (b *Btrfs) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := b.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), b.commandError(ctx, args, stderr.String(), err)
	}
	return stdout.Bytes(), nil
}

// command prepares btrfs with args, LC_ALL=C, ended with ctx.
func (b *Btrfs) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, b.bin(), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.WaitDelay = waitDelay
	return cmd
}

// commandError makes the *CommandError of the btrfs command args that
// failed with err.
func (b *Btrfs) commandError(ctx context.Context, args []string, stderr string, err error) *CommandError {
	ce := &CommandError{
		Args:   append([]string{b.bin()}, args...),
		Stderr: tidyStderr(stderr),
		Err:    err,
	}
	// Killed only when the context ended the command, not when it
	// failed on its own just before the context ended.
	var exit *exec.ExitError
	if ctxErr := ctx.Err(); ctxErr != nil && (!errors.As(err, &exit) || !exit.Exited()) {
		ce.Killed = ctxErr
	}
	return ce
}

func (b *Btrfs) observe(op, path string) {
	if b.Observer != nil {
		b.Observer(op, path)
	}
}

// checkAbs refuses relative paths: the Driver takes absolute ones, and a
// relative path starting with "-" would reach btrfs as an option.
func checkAbs(paths ...string) error {
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%q is not an absolute path", p)
		}
	}
	return nil
}

// IsBtrfs reports whether path is on a mounted btrfs filesystem, by its
// statfs magic; a path that does not exist is not. It runs no command.
func (b *Btrfs) IsBtrfs(ctx context.Context, path string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("check btrfs %s: %w", path, err)
	}
	ok, err := onBtrfs(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check btrfs %s: %w", path, err)
	}
	if !ok {
		return false, nil
	}
	// A pool is a mount point. An empty directory where a pool should be
	// mounted passes the statfs check when / is btrfs; shares made there
	// would land on the root filesystem.
	mounted, err := looppool.Mounted(path)
	if err != nil {
		return false, fmt.Errorf("check btrfs %s: %w", path, err)
	}
	return mounted, nil
}

func onBtrfs(path string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return false, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	return uint32(st.Type) == btrfsSuperMagic, nil
}

// isSubvolume reports whether path itself (not a symlink to it) is the root
// directory of a btrfs subvolume.
func isSubvolume(path string) (bool, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() || st.Ino != subvolumeRootIno {
		return false, nil
	}
	return onBtrfs(path)
}

// Subvolumes lists every subvolume below the pool, in btrfs's ID order, with
// paths relative to pool. The pool may be the filesystem's top level, a
// subvolume mounted with subvol=, or a plain directory inside either.
//
// It runs no command: it asks the kernel with the ioctls "btrfs subvolume
// list" uses, in one search of the filesystem's root tree (see
// listSubvolumes), and BTRFS_IOC_INO_LOOKUP for the ID of the subvolume
// holding the pool ("btrfs inspect-internal rootid"). What it returns is
// what "btrfs subvolume list -a -puqR -gc" and "btrfs subvolume list -r"
// together show, read-only flag included. Paths are relative to the top
// level, then taken relative to the pool's own path.
func (b *Btrfs) Subvolumes(ctx context.Context, pool string) ([]Subvolume, error) {
	subvols, err := b.subvolumes(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("list subvolumes of %s: %w", pool, err)
	}
	return subvols, nil
}

func (b *Btrfs) subvolumes(ctx context.Context, pool string) ([]Subvolume, error) {
	if err := checkAbs(pool); err != nil {
		return nil, err
	}
	within, err := pathInSubvolume(pool)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(pool)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, rootID, err := inoLookup(f, 0, subvolumeRootIno)
	if err != nil {
		return nil, fmt.Errorf("find the subvolume of %s: %w", pool, err)
	}
	all, readOnly, err := listSubvolumes(ctx, f)
	if err != nil {
		return nil, err
	}
	return subvolumesBelow(all, readOnly, rootID, within)
}

// pathInSubvolume returns where pool lies inside the subvolume that holds
// it: "" when pool is that subvolume's root (a mount point, normally), else
// like "srv/tank". It walks up to the directory with the subvolume root's
// inode number on the same device (each subvolume has its own st_dev).
func pathInSubvolume(pool string) (string, error) {
	real, err := filepath.EvalSymlinks(pool)
	if err != nil {
		return "", err
	}
	btrfs, err := onBtrfs(real)
	if err != nil {
		return "", err
	}
	if !btrfs {
		return "", fmt.Errorf("%s is not on a btrfs filesystem", pool)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(real, &st); err != nil {
		return "", &fs.PathError{Op: "stat", Path: real, Err: err}
	}
	dev, dir := st.Dev, real
	for st.Ino != subvolumeRootIno {
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("found no subvolume root above %s", pool)
		}
		if err := syscall.Stat(parent, &st); err != nil {
			return "", &fs.PathError{Op: "stat", Path: parent, Err: err}
		}
		if st.Dev != dev {
			return "", fmt.Errorf("found no subvolume root above %s before the mount point %s", pool, dir)
		}
		dir = parent
	}
	rel, err := filepath.Rel(dir, real)
	if err != nil || rel == "." {
		return "", err
	}
	return filepath.ToSlash(rel), nil
}

// listEntry is one subvolume as "btrfs subvolume list" shows it.
type listEntry struct {
	ID, Gen, CGen, Parent, TopLevel uint64
	UUID, ParentUUID, ReceivedUUID  string
	Path                            string
	hasID, hasPath, hasParent       bool
}

// subvolumesBelow turns the subvolumes of a filesystem, as "btrfs subvolume
// list -a -puqR -gc" shows them (paths relative to the top level, those
// whose parent is not rootID with "<FS_TREE>/" before them or not) into
// the subvolumes below the pool, which is the directory within inside the
// subvolume rootID.
func subvolumesBelow(all []listEntry, readOnly map[uint64]bool, rootID uint64, within string) ([]Subvolume, error) {
	full := make(map[uint64]string, len(all))
	for _, e := range all {
		if !e.hasParent {
			return nil, fmt.Errorf("btrfs subvolume list: no parent for ID %d", e.ID)
		}
		p := e.Path
		if e.Parent != rootID {
			p = strings.TrimPrefix(p, fsTreePrefix)
		}
		full[e.ID] = p
	}
	var poolPath string
	if rootID != topLevelID {
		p, ok := full[rootID]
		if !ok {
			return nil, fmt.Errorf("btrfs subvolume list does not show the pool's subvolume, ID %d", rootID)
		}
		poolPath = p
	}
	if within != "" {
		poolPath = strings.TrimPrefix(poolPath+"/"+within, "/")
	}
	var subvols []Subvolume
	for _, e := range all {
		rel := full[e.ID]
		if poolPath != "" {
			var ok bool
			if rel, ok = strings.CutPrefix(rel, poolPath+"/"); !ok {
				continue // the pool itself, or outside it
			}
		}
		subvols = append(subvols, Subvolume{
			ID:                 e.ID,
			Path:               rel,
			UUID:               e.UUID,
			ParentUUID:         e.ParentUUID,
			ReceivedUUID:       e.ReceivedUUID,
			ReadOnly:           readOnly[e.ID],
			Generation:         e.Gen,
			CreationGeneration: e.CGen,
		})
	}
	return subvols, nil
}

// Created returns the creation time of the subvolume at path from "btrfs
// subvolume show" (its "Creation time:" line, with the zone offset), in UTC.
func (b *Btrfs) Created(ctx context.Context, path string) (time.Time, error) {
	if err := checkAbs(path); err != nil {
		return time.Time{}, err
	}
	out, err := b.run(ctx, "subvolume", "show", path)
	if err != nil {
		return time.Time{}, err
	}
	return parseCreationTime(out)
}

// parseCreationTime reads the "Creation time:" line of "btrfs subvolume
// show", like "Creation time: 		2026-11-25 08:46:00 +0000".
func parseCreationTime(out []byte) (time.Time, error) {
	for line := range strings.SplitSeq(string(out), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "Creation time:")
		if !ok {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05 -0700", strings.TrimSpace(v))
		if err != nil {
			return time.Time{}, fmt.Errorf("btrfs subvolume show: creation time: %v", err)
		}
		return t.UTC(), nil
	}
	return time.Time{}, errors.New("btrfs subvolume show: no creation time")
}

// CreateSubvolume makes an empty subvolume at path with "btrfs subvolume
// create"; it fails when path exists.
func (b *Btrfs) CreateSubvolume(ctx context.Context, path string) error {
	if err := checkAbs(path); err != nil {
		return fmt.Errorf("create subvolume %s: %w", path, err)
	}
	b.observe("create", path)
	if _, err := b.run(ctx, "subvolume", "create", path); err != nil {
		return fmt.Errorf("create subvolume %s: %w", path, err)
	}
	return nil
}

// DeleteSubvolume deletes the subvolume at path with "btrfs subvolume
// delete", never -R: a subvolume holding nested subvolumes makes it fail
// and nothing is deleted. A path that is not itself a subvolume (a plain
// directory, a symlink, nothing) is refused before any command runs.
func (b *Btrfs) DeleteSubvolume(ctx context.Context, path string) error {
	if err := checkAbs(path); err != nil {
		return fmt.Errorf("delete subvolume %s: %w", path, err)
	}
	ok, err := isSubvolume(path)
	if err != nil {
		return fmt.Errorf("delete subvolume %s: %w", path, err)
	}
	if !ok {
		return fmt.Errorf("delete subvolume %s: %w", path, ErrNotSubvolume)
	}
	b.observe("delete", path)
	if _, err := b.run(ctx, "subvolume", "delete", path); err != nil {
		return fmt.Errorf("delete subvolume %s: %w", path, err)
	}
	return nil
}

// Snapshot makes a snapshot of src at dst with "btrfs subvolume snapshot",
// read-only with -r. It refuses a dst that exists, because btrfs would put
// the snapshot inside an existing directory instead.
func (b *Btrfs) Snapshot(ctx context.Context, src, dst string, readOnly bool) error {
	wrap := func(err error) error { return fmt.Errorf("snapshot %s to %s: %w", src, dst, err) }
	if err := checkAbs(src, dst); err != nil {
		return wrap(err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return wrap(fmt.Errorf("%s: %w", dst, fs.ErrExist))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return wrap(err)
	}
	args := []string{"subvolume", "snapshot"}
	if readOnly {
		args = append(args, "-r")
	}
	b.observe("snapshot", dst)
	if _, err := b.run(ctx, append(args, src, dst)...); err != nil {
		return wrap(err)
	}
	return nil
}

// SetReadOnly sets the subvolume's ro property with "btrfs property set
// -ts". btrfs-progs refuses to clear it on a received subvolume (one with a
// received UUID), which keeps incremental receives on it safe.
func (b *Btrfs) SetReadOnly(ctx context.Context, path string, readOnly bool) error {
	if err := checkAbs(path); err != nil {
		return fmt.Errorf("set read-only %s: %w", path, err)
	}
	b.observe("set-ro", path)
	if _, err := b.run(ctx, "property", "set", "-ts", path, "ro", strconv.FormatBool(readOnly)); err != nil {
		return fmt.Errorf("set read-only=%t %s: %w", readOnly, path, err)
	}
	return nil
}

// QuotaEnabled reports whether quotas are enabled on the pool, by whether
// its filesystem has a quota tree (BTRFS_IOC_TREE_SEARCH_V2 of its status
// item, as "btrfs qgroup show" reads it). It runs no command.
func (b *Btrfs) QuotaEnabled(ctx context.Context, pool string) (bool, error) {
	if err := checkAbs(pool); err != nil {
		return false, fmt.Errorf("check quota of %s: %w", pool, err)
	}
	f, err := openOnBtrfs(pool)
	if err != nil {
		return false, fmt.Errorf("check quota of %s: %w", pool, err)
	}
	defer f.Close()
	on, err := quotaEnabled(ctx, f)
	if err != nil {
		return false, fmt.Errorf("check quota of %s: %w", pool, err)
	}
	return on, nil
}

// openOnBtrfs opens path, which must be on a btrfs filesystem, for its
// ioctls.
func openOnBtrfs(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if uint32(st.Type) != btrfsSuperMagic {
		f.Close()
		return nil, fmt.Errorf("%s is not on a btrfs filesystem", path)
	}
	return f, nil
}

// EnableQuota runs "btrfs quota enable" and then "btrfs quota rescan -w",
// which waits for the rescan that enabling started, so usage numbers are
// right when it returns. Enabling quotas that are enabled is harmless.
func (b *Btrfs) EnableQuota(ctx context.Context, pool string) error {
	if err := checkAbs(pool); err != nil {
		return fmt.Errorf("enable quota on %s: %w", pool, err)
	}
	b.observe("enable-quota", pool)
	if _, err := b.run(ctx, "quota", "enable", pool); err != nil {
		return fmt.Errorf("enable quota on %s: %w", pool, err)
	}
	if _, err := b.run(ctx, "quota", "rescan", "-w", pool); err != nil {
		return fmt.Errorf("enable quota on %s: wait for the rescan: %w", pool, err)
	}
	return nil
}

// Qgroups reads the level-0 qgroups of the pool's filesystem from its
// quota tree (BTRFS_IOC_TREE_SEARCH_V2, as "btrfs qgroup show --raw -r -e"
// reads them), by subvolume ID; it runs no command. The numbers are as of
// the last transaction commit (up to 30 s old by default); a limit set by
// hand is there at once. Without quotas it fails with ErrQuotaDisabled.
func (b *Btrfs) Qgroups(ctx context.Context, pool string) (map[uint64]Qgroup, error) {
	if err := checkAbs(pool); err != nil {
		return nil, fmt.Errorf("read qgroups of %s: %w", pool, err)
	}
	f, err := openOnBtrfs(pool)
	if err != nil {
		return nil, fmt.Errorf("read qgroups of %s: %w", pool, err)
	}
	defer f.Close()
	q, err := readQgroups(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("read qgroups of %s: %w", pool, err)
	}
	return q, nil
}

// SetQuota limits the referenced bytes of the subvolume at path with "btrfs
// qgroup limit", or removes the limit ("none") when bytes is 0.
func (b *Btrfs) SetQuota(ctx context.Context, path string, bytes uint64) error {
	if err := checkAbs(path); err != nil {
		return fmt.Errorf("set quota of %s: %w", path, err)
	}
	limit := "none"
	if bytes > 0 {
		limit = strconv.FormatUint(bytes, 10)
	}
	b.observe("set-quota", path)
	if _, err := b.run(ctx, "qgroup", "limit", limit, path); err != nil {
		return fmt.Errorf("set quota of %s to %s: %w", path, limit, err)
	}
	return nil
}

// MkdirAll makes the directory path and its missing parents, mode 0700. A
// directory that exists is left alone and not observed.
func (b *Btrfs) MkdirAll(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("make directory %s: %w", path, err)
	}
	if err := checkAbs(path); err != nil {
		return fmt.Errorf("make directory %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil
	}
	b.observe("mkdir", path)
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("make directory %s: %w", path, err)
	}
	return nil
}

// Rename renames from to to with rename(2). It refuses a to that exists,
// which rename(2) would replace when it is an empty directory or a file.
func (b *Btrfs) Rename(ctx context.Context, from, to string) error {
	wrap := func(err error) error { return fmt.Errorf("rename %s to %s: %w", from, to, err) }
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	if err := checkAbs(from, to); err != nil {
		return wrap(err)
	}
	if _, err := os.Lstat(to); err == nil {
		return wrap(fmt.Errorf("%s: %w", to, fs.ErrExist))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return wrap(err)
	}
	b.observe("rename", to)
	if err := os.Rename(from, to); err != nil {
		return wrap(err)
	}
	return nil
}

// Entries lists what is below dir, relative to it and sorted, without
// following symlinks or descending into subvolumes.
func (b *Btrfs) Entries(ctx context.Context, dir string) ([]string, error) {
	wrap := func(err error) error { return fmt.Errorf("list %s: %w", dir, err) }
	if err := checkAbs(dir); err != nil {
		return nil, wrap(err)
	}
	var out []string
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		for _, e := range ents {
			r := filepath.Join(rel, e.Name())
			out = append(out, r)
			if !e.IsDir() { // a symlink to a directory is not one
				continue
			}
			if sub, err := isSubvolume(filepath.Join(dir, r)); err != nil {
				return err
			} else if !sub {
				if err := walk(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, wrap(err)
	}
	slices.Sort(out)
	return out, nil
}

// RemoveAll removes path and everything below it, bottom up, following no
// symlink and removing nothing inside a subvolume.
func (b *Btrfs) RemoveAll(ctx context.Context, path string) error {
	wrap := func(err error) error { return fmt.Errorf("remove %s: %w", path, err) }
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	if err := checkAbs(path); err != nil {
		return wrap(err)
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	b.observe("remove", path)
	var errs []error
	var remove func(p string)
	remove = func(p string) {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return
		case err != nil:
			errs = append(errs, err)
			return
		}
		if fi.IsDir() {
			if sub, err := isSubvolume(p); err != nil {
				errs = append(errs, err)
				return
			} else if sub {
				errs = append(errs, fmt.Errorf("%s is a subvolume", p))
				return
			}
			ents, err := os.ReadDir(p)
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, e := range ents {
				remove(filepath.Join(p, e.Name()))
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	remove(path)
	if err := errors.Join(errs...); err != nil {
		return wrap(err)
	}
	return nil
}

// streamBuffer is the size of the buffers that copy send streams: a few
// of btrfs's 64 KiB commands at a time.
const streamBuffer = 256 << 10

// Send runs "btrfs send -q [-p parent] snapshot" and copies its stdout to w
// as it comes. When w fails, btrfs send is stopped and Send returns w's
// error; when btrfs send fails, its error with its stderr. When w is an
// *os.File (a pipe, normally), btrfs send writes into it itself, with no
// copy in this process; when the pipe's reader goes away, btrfs send fails
// with a broken pipe.
func (b *Btrfs) Send(ctx context.Context, snapshot, parent string, w io.Writer) error {
	wrap := func(err error) error {
		if parent != "" {
			return fmt.Errorf("send %s from %s: %w", snapshot, parent, err)
		}
		return fmt.Errorf("send %s: %w", snapshot, err)
	}
	if err := checkAbs(snapshot); err != nil {
		return wrap(err)
	}
	args := []string{"send", "-q"}
	if parent != "" {
		if err := checkAbs(parent); err != nil {
			return wrap(err)
		}
		args = append(args, "-p", parent)
	}
	args = append(args, snapshot)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := b.command(ctx, args...)
	stderr := &cappedBuffer{max: maxStderr * 8}
	cmd.Stderr = stderr
	if f, ok := w.(*os.File); ok {
		// btrfs writes into the file (a pipe, normally) itself.
		cmd.Stdout = f
		if err := cmd.Run(); err != nil {
			return wrap(b.commandError(ctx, args, stderr.String(), err))
		}
		return nil
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return wrap(err)
	}
	if err := cmd.Start(); err != nil {
		return wrap(b.commandError(ctx, args, stderr.String(), err))
	}
	ew := &errWriter{w: w}
	_, copyErr := io.CopyBuffer(ew, stdout, make([]byte, streamBuffer))
	if ew.err != nil {
		cancel() // nobody takes the rest of the stream
		_ = cmd.Wait()
		return wrap(fmt.Errorf("write the stream: %w", ew.err))
	}
	waitErr := cmd.Wait()
	if waitErr != nil {
		return wrap(b.commandError(ctx, args, stderr.String(), waitErr))
	}
	if copyErr != nil {
		return wrap(fmt.Errorf("read the stream: %w", copyErr))
	}
	return nil
}

// Receive runs "btrfs receive -q -e --chroot dir" with r as its stdin.
// --chroot confines it to dir: a crafted stream could otherwise name paths
// outside dir, or clone from any file of the filesystem. -e makes it stop
// at the stream's end command instead of waiting for more. A failure
// reading r is added to the error, since it is usually why btrfs receive
// saw a short stream.
func (b *Btrfs) Receive(ctx context.Context, dir string, r io.Reader) error {
	wrap := func(err error) error { return fmt.Errorf("receive into %s: %w", dir, err) }
	if err := checkAbs(dir); err != nil {
		return wrap(err)
	}
	args := []string{"receive", "-q", "-e", "--chroot", dir}
	cmd := b.command(ctx, args...)
	stderr := &cappedBuffer{max: maxStderr * 8}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return wrap(err)
	}
	if f, ok := stdin.(syscallConner); ok {
		growPipe(f)
	}
	b.observe("receive", dir)
	if err := cmd.Start(); err != nil {
		return wrap(b.commandError(ctx, args, stderr.String(), err))
	}
	// The copy is ours rather than exec's: exec's Wait would wait for a
	// Read of r that may block long after btrfs has exited.
	readErr := make(chan error, 1)
	go func() {
		er := &errReader{r: r}
		_, _ = copyFilled(stdin, er, make([]byte, streamBuffer))
		readErr <- er.err // before Close, so Wait below finds it
		stdin.Close()
	}()
	waitErr := cmd.Wait()
	if waitErr == nil {
		return nil
	}
	ce := b.commandError(ctx, args, dropChrootNote(stderr.String()), waitErr)
	select {
	case err := <-readErr:
		if err != nil {
			return wrap(fmt.Errorf("%w (reading the stream: %w)", ce, err))
		}
	default:
	}
	return wrap(ce)
}

// dropChrootNote removes the "Chroot to DIR" line that btrfs receive
// --chroot prints even with -q, which would only repeat the directory in
// an error message.
func dropChrootNote(stderr string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(l, "Chroot to ") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// errWriter remembers why its writer failed.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// errReader remembers why its reader failed (io.EOF is no failure).
// copyFilled copies src to dst as io.Copy does, but fills buf before each
// write: a TLS stream arrives a record (16 KiB) at a time, and writing each
// record to btrfs receive's pipe on its own wakes btrfs receive, and this
// process after it, sixteen times as often as a full buffer does. It
// stops at src's first error (io.EOF included) after writing what it read.
func copyFilled(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, rerr := io.ReadFull(src, buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF: // src ended, after k bytes
			return n, nil
		default:
			return n, rerr
		}
	}
}

type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// so a chatty command cannot fill memory.
type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// pipeSize is the capacity asked for the pipes that carry send streams:
// larger than the 64 KiB default, so the two ends switch less often.
const pipeSize = 1 << 20

// syscallConner is a file whose descriptor can be reached, like *os.File.
type syscallConner interface {
	SyscallConn() (syscall.RawConn, error)
}

// growPipe asks the kernel for a pipe of pipeSize (F_SETPIPE_SZ); a refusal
// (beyond /proc/sys/fs/pipe-max-size) leaves it as it was.
func growPipe(f syscallConner) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		const fSetPipeSz = 1031 // F_SETPIPE_SZ, Linux
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, pipeSize)
	})
}
