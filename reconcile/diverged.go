package reconcile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/fleetctl/fleetctl/schema"
)

// What a demoted share wrote after its last replication snapshot
// (fleetctl diverged). A diverged snapshot <pool>/.fleetctl/diverged/<share>.<stamp>
// is a read-only snapshot of the share taken after its newest replication
// snapshot on the same pool, both snapshots of the same subvolume (the
// same parent UUID): that replication snapshot is the base, the data both
// appliances held. btrfs itself compares the two trees: "btrfs send
// --no-data -p BASE DIVERGED | btrfs receive --dump" walks only what
// changed between them (no file data), and ParseDump turns its commands
// into changes by path. Stat of both read-only trees adds sizes and
// drops an atime-only change.

// ChangeKind says what happened to a path in a diverged snapshot.
type ChangeKind string

// The kinds of changes.
const (
	ChangeAdded   ChangeKind = "added"
	ChangeChanged ChangeKind = "changed"
	ChangeDeleted ChangeKind = "deleted"
	// ChangeRenamed: the same file under a new path (From is the old one).
	ChangeRenamed ChangeKind = "renamed"
)

// Change is one path that differs between a diverged snapshot and its
// base, relative to the share's top, with slashes.
type Change struct {
	Kind ChangeKind `json:"change"`
	Path string     `json:"path"`
	// From is a renamed path's path in the base.
	From string `json:"from,omitempty"`
	// Dir says the path is a directory.
	Dir bool `json:"dir,omitempty"`
	// Size is the file's size in bytes: in the diverged snapshot, or for
	// a deleted path in the base; nil for a directory or when unknown.
	Size *int64 `json:"size,omitempty"`
	// TimesOnly: only its times changed (the dump's utimes); Resolve
	// drops it when only the access time did, or when it is a directory
	// (whose times follow the changes of its entries).
	TimesOnly bool `json:"-"`
}

// dumpRec is what ParseDump knows of one path of the diverged tree.
type dumpRec struct {
	orig     string // its path in the base; "" when created by the stream
	created  bool
	dir      bool
	linkOf   string // a new hard link's target's path in the base
	renamed  bool   // a base entry renamed by the stream itself
	modified bool   // something but utimes
	times    bool   // utimes
}

// ParseDump turns the output of "btrfs receive --dump" of an incremental
// --no-data stream into the changes it makes to the base, sorted by path.
// Paths in the dump are ./<snapshot name>/<path>, escaped as btrfs
// escapes them; new inodes appear under an orphan name and are renamed
// into place, a moved file as a link and an unlink, a deleted directory
// is renamed to an orphan name, emptied and removed.
func ParseDump(r io.Reader) ([]Change, error) {
	var (
		root  string
		live  = map[string]*dumpRec{} // current path → record
		moves = map[string]string{}   // current path → base path, of moved base entries
		gone  = map[string]bool{}     // base path → was a directory
	)
	origOf := func(p string) string {
		rest := ""
		for q := p; ; {
			if o, ok := moves[q]; ok {
				return o + rest
			}
			if r, ok := live[q]; ok && r.created {
				return ""
			}
			i := strings.LastIndexByte(q, '/')
			if i < 0 {
				return p
			}
			rest = q[i:] + rest
			q = q[:i]
		}
	}
	get := func(p string) *dumpRec {
		if r, ok := live[p]; ok {
			return r
		}
		r := &dumpRec{orig: origOf(p)}
		live[p] = r
		return r
	}
	moveTree := func(from, to string) {
		for _, m := range []map[string]*dumpRec{live} {
			for k, v := range m {
				if k == from {
					delete(m, k)
					m[to] = v
				} else if rest, ok := strings.CutPrefix(k, from+"/"); ok {
					delete(m, k)
					m[to+"/"+rest] = v
				}
			}
		}
		for k, v := range moves {
			if rest, ok := strings.CutPrefix(k, from+"/"); ok {
				delete(moves, k)
				moves[to+"/"+rest] = v
			}
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		fields, err := splitDumpLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("dump line %d: %w", line, err)
		}
		if len(fields) < 2 {
			continue
		}
		cmd, raw := fields[0], fields[1]
		kv := map[string]string{}
		for _, f := range fields[2:] {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		if cmd == "snapshot" || cmd == "subvol" {
			root = strings.TrimSuffix(raw, "/")
			continue
		}
		if root == "" {
			return nil, fmt.Errorf("dump line %d: %s before the snapshot command", line, cmd)
		}
		rel := func(p string) (string, error) {
			if p == root || p == root+"/" {
				return "", nil
			}
			if rest, ok := strings.CutPrefix(p, root+"/"); ok {
				return strings.TrimSuffix(rest, "/"), nil
			}
			return "", fmt.Errorf("dump line %d: path %q is outside %s", line, p, root)
		}
		p, err := rel(raw)
		if err != nil {
			return nil, err
		}
		switch cmd {
		case "mkfile", "mkdir", "mknod", "mkfifo", "mksock", "symlink":
			live[p] = &dumpRec{created: true, dir: cmd == "mkdir"}
		case "rename":
			to, err := rel(kv["dest"])
			if err != nil {
				return nil, err
			}
			rec, ok := live[p]
			if !ok {
				rec = &dumpRec{orig: origOf(p)}
				live[p] = rec
			}
			if !rec.created {
				rec.renamed = true
				if _, ok := moves[p]; !ok {
					moves[p] = rec.orig
				}
			}
			if o, ok := moves[p]; ok {
				delete(moves, p)
				moves[to] = o
			}
			moveTree(p, to)
		case "link":
			// link NEW dest=TARGET, TARGET relative to the snapshot's top.
			target := strings.TrimPrefix(kv["dest"], "./")
			live[p] = &dumpRec{created: true, linkOf: origOf(target)}
		case "unlink", "rmdir":
			rec := get(p)
			delete(live, p)
			delete(moves, p)
			if !rec.created && rec.orig != "" {
				gone[rec.orig] = cmd == "rmdir" || rec.dir
			}
		case "utimes":
			get(p).times = true
		case "end":
		default:
			// write, clone, truncate, update_extent, chmod, chown,
			// set_xattr, remove_xattr, fileattr, encoded_write, ...
			get(p).modified = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	isGone := func(p string) bool { _, ok := gone[p]; return ok }
	var out []Change
	for p, rec := range live {
		switch {
		case rec.created && rec.linkOf != "" && isGone(rec.linkOf):
			delete(gone, rec.linkOf)
			out = append(out, Change{Kind: ChangeRenamed, Path: p, From: rec.linkOf})
		case rec.created && isGone(p) && !rec.dir && !gone[p]:
			// deleted and made anew under the same name: changed
			delete(gone, p)
			out = append(out, Change{Kind: ChangeChanged, Path: p})
		case rec.created:
			out = append(out, Change{Kind: ChangeAdded, Path: p, Dir: rec.dir})
		case rec.renamed && rec.orig != p:
			out = append(out, Change{Kind: ChangeRenamed, Path: p, From: rec.orig, Dir: rec.dir})
		case rec.modified || rec.times:
			out = append(out, Change{Kind: ChangeChanged, Path: p, Dir: rec.dir, TimesOnly: !rec.modified})
		}
	}
	for p, dir := range gone {
		out = append(out, Change{Kind: ChangeDeleted, Path: p, Dir: dir})
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// splitDumpLine splits a line of btrfs receive --dump into its fields,
// undoing btrfs's escapes (backslash before a space, a backslash or a
// C escape letter; \ooo in octal).
func splitDumpLine(s string) ([]string, error) {
	var (
		out []string
		cur strings.Builder
		in  bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
			continue
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("a lone backslash ends %q", s)
			}
			i++
			e := s[i]
			switch {
			case e >= '0' && e <= '7' && i+2 < len(s):
				v, err := strconv.ParseUint(s[i:i+3], 8, 8)
				if err != nil {
					return nil, fmt.Errorf("bad escape in %q", s)
				}
				cur.WriteByte(byte(v))
				i += 2
			default:
				if i := strings.IndexByte("abefnrtv", e); i >= 0 {
					e = "\a\b\x1b\f\n\r\t\v"[i]
				}
				cur.WriteByte(e)
			}
		default:
			cur.WriteByte(c)
		}
		in = true
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

// Resolve adds sizes to changes from the read-only trees base and
// diverged (the snapshots' paths) and drops a change of times alone that
// is a directory's or only of its access time. A path it cannot stat is
// kept without a size.
func Resolve(changes []Change, base, diverged string) []Change {
	out := changes[:0:0]
	for _, c := range changes {
		root := diverged
		if c.Kind == ChangeDeleted {
			root = base
		}
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(c.Path)))
		if err == nil {
			c.Dir = fi.IsDir()
			if !c.Dir {
				sz := fi.Size()
				c.Size = &sz
			}
		}
		if c.TimesOnly {
			if c.Dir {
				continue
			}
			if old, err2 := os.Lstat(filepath.Join(base, filepath.FromSlash(c.Path))); err == nil && err2 == nil && sameTimes(old, fi) {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// sameTimes says a and b have the same modification and change times.
func sameTimes(a, b fs.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return false
	}
	return a.ModTime().Equal(b.ModTime()) && sa.Ctim == sb.Ctim && sa.Size == sb.Size && sa.Mode == sb.Mode
}

// DivergedBase is the base of the diverged snapshot d among the pool's
// subvolumes: the newest replication snapshot of the same share of the
// same subvolume (parent UUID) created no later than d; false when none
// is left (never replicated, or pruned since).
func DivergedBase(share string, d Subvolume, subvolumes []Subvolume) (Subvolume, bool) {
	var best Subvolume
	found := false
	for _, sv := range subvolumes {
		name, ok := ClassifyCopy(sv.Path)
		if !ok || name.Kind != CopyReplication || name.Share != share {
			continue
		}
		if sv.ParentUUID == "" || sv.ParentUUID != d.ParentUUID || sv.CreationGeneration > d.CreationGeneration {
			continue
		}
		if !found || sv.CreationGeneration > best.CreationGeneration ||
			(sv.CreationGeneration == best.CreationGeneration && sv.Path > best.Path) {
			best, found = sv, true
		}
	}
	return best, found
}

// Differ compares two read-only snapshots of one filesystem: it writes
// what "btrfs receive --dump" prints of "btrfs send --no-data -p base
// snapshot" to w. Btrfs implements it.
type Differ interface {
	DumpChanges(ctx context.Context, snapshot, base string, w io.Writer) error
}

// DivergedCopy is one diverged snapshot of a share with what it changed.
type DivergedCopy struct {
	Pool string `json:"pool"`
	// Path is the diverged snapshot's, Base its base's; Base is empty
	// when no base is left, and Error says why the changes are missing.
	Path    string   `json:"path"`
	Base    string   `json:"base,omitempty"`
	Changes []Change `json:"changes"`
	Error   string   `json:"error,omitempty"`
}

// ListDiverged lists the diverged snapshots of share on pool, each with
// its changes against its base. It fails when the pool cannot be read; a
// snapshot that cannot be compared carries its error.
func ListDiverged(ctx context.Context, d Driver, pool schema.Pool, share string) ([]DivergedCopy, error) {
	ok, err := d.IsBtrfs(ctx, pool.Path)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", pool.Name, err)
	}
	if !ok {
		return nil, fmt.Errorf("pool %s: %s is not a mounted btrfs filesystem", pool.Name, pool.Path)
	}
	svs, err := d.Subvolumes(ctx, pool.Path)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", pool.Name, err)
	}
	var out []DivergedCopy
	for _, sv := range svs {
		name, ok := ClassifyCopy(sv.Path)
		if !ok || name.Kind != CopyDiverged || name.Share != share {
			continue
		}
		dc := DivergedCopy{Pool: pool.Name, Path: filepath.Join(pool.Path, sv.Path), Changes: []Change{}}
		out = append(out, dc)
		c := &out[len(out)-1]
		base, ok := DivergedBase(share, sv, svs)
		if !ok {
			c.Error = "no replication snapshot it was taken after is left on this pool (never replicated, or pruned after a failback), so there is nothing to compare it with"
			continue
		}
		c.Base = filepath.Join(pool.Path, base.Path)
		df, ok := d.(Differ)
		if !ok {
			c.Error = "this agent's btrfs driver cannot compare snapshots"
			continue
		}
		var buf strings.Builder
		if err := df.DumpChanges(ctx, c.Path, c.Base, &buf); err != nil {
			c.Error = err.Error()
			continue
		}
		changes, err := ParseDump(strings.NewReader(buf.String()))
		if err != nil {
			c.Error = err.Error()
			continue
		}
		c.Changes = Resolve(changes, c.Base, c.Path)
	}
	slices.SortFunc(out, func(a, b DivergedCopy) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// DumpChanges runs "btrfs send -q --no-data -p base snapshot | btrfs
// receive --dump" and writes the dump to w.
func (b *Btrfs) DumpChanges(ctx context.Context, snapshot, base string, w io.Writer) error {
	if err := checkAbs(snapshot, base); err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	sendArgs := []string{"send", "-q", "--no-data", "-p", base, snapshot}
	send := b.command(ctx, sendArgs...)
	send.Stdout = pw
	var sendErr, dumpErr cappedBuffer
	sendErr.max, dumpErr.max = maxStderr, maxStderr
	send.Stderr = &sendErr
	dumpArgs := []string{"receive", "--dump"}
	dump := b.command(ctx, dumpArgs...)
	dump.Stdin = pr
	dump.Stdout = w
	dump.Stderr = &dumpErr
	if err := send.Start(); err != nil {
		pr.Close()
		pw.Close()
		return b.commandError(ctx, sendArgs, "", err)
	}
	pw.Close()
	derr := dump.Run()
	pr.Close()
	serr := send.Wait()
	if derr == nil && killedByPipe(serr) {
		// btrfs receive --dump stops at the stream's end command and
		// exits 0; a send still writing after it (what it writes past
		// the end marker is nothing the dump needs) dies of SIGPIPE.
		// The dump succeeding means it read the whole stream.
		serr = nil
	}
	var errs []error
	if serr != nil {
		errs = append(errs, b.commandError(ctx, sendArgs, sendErr.String(), serr))
	}
	if derr != nil {
		errs = append(errs, b.commandError(ctx, dumpArgs, dumpErr.String(), derr))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("compare %s with %s: %w", snapshot, path.Base(base), err)
	}
	return nil
}

// killedByPipe says err is a command's exit by SIGPIPE.
func killedByPipe(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGPIPE
}
