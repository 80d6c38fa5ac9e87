// Package reconciletest holds test doubles for package reconcile: FakeDriver,
// an in-memory btrfs behind the reconcile.Driver interface. Only tests import
// it, so the fleetctl binary never links it (nor anything it brings along).
package reconciletest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
)

// FakeDriver is an in-memory reconcile.Driver for tests: btrfs filesystems mounted at
// the paths given to AddPool, each a tree of subvolumes and plain
// directories, with IDs, UUIDs, received UUIDs (MarkReceived), read-only
// flags, generations (a write is Touch; a snapshot is a change of its
// source, as in btrfs), qgroups with limits and a quota switch. It keeps the Driver contract as btrfs does:
// creating needs the parent directory and a free name, nothing is written
// inside a read-only subvolume, DeleteSubvolume refuses plain directories
// and subvolumes holding nested subvolumes, and qgroups exist only once
// quotas are enabled. Errors name the operation and the path.
//
// It is safe for concurrent use. The zero value is not; use NewFakeDriver.
type FakeDriver struct {
	mu        sync.Mutex
	pools     map[string]*fakePool // by mount path
	failures  map[string]error     // op + "\x00" + path
	mutations int
	log       []string
	uuids     uint64
}

type fakePool struct {
	quota   bool
	nextID  uint64
	gen     uint64
	subvols map[string]*fakeSubvol // by path relative to the mount
	dirs    map[string]bool        // plain directories, relative
	below   map[string]int         // how many entries each path has below it
}

// add records a new subvolume (sv) or plain directory (sv == nil) at rel.
func (p *fakePool) add(rel string, sv *fakeSubvol) {
	if sv != nil {
		p.subvols[rel] = sv
	} else {
		p.dirs[rel] = true
	}
	for dir := parentOf(rel); dir != ""; dir = parentOf(dir) {
		p.below[dir]++
	}
}

// remove forgets the entry at rel, which has nothing below it.
func (p *fakePool) remove(rel string) {
	delete(p.subvols, rel)
	delete(p.dirs, rel)
	delete(p.below, rel)
	for dir := parentOf(rel); dir != ""; dir = parentOf(dir) {
		p.below[dir]--
	}
}

type fakeSubvol struct {
	reconcile.Subvolume
	qgroup  reconcile.Qgroup
	created time.Time
}

// emptySubvolumeBytes is what btrfs's qgroup shows for an empty subvolume.
const emptySubvolumeBytes = 16 << 10

var (
	errNotSubvolume = errors.New("not a subvolume")
	errNotPlain     = errors.New("a subvolume")
	errNested       = errors.New("holds nested subvolumes")
	errReadOnly     = errors.New("read-only file system")
	errNoQuota      = errors.New("quotas not enabled")
	errNotOnPool    = errors.New("not on a mounted btrfs filesystem")
	errCrossDevice  = errors.New("source and destination are on different filesystems")
	errNotModelled  = errors.New("send/receive not modelled by FakeDriver; use a loop pool (looppooltest.ForTest)")
)

// NewFakeDriver returns a FakeDriver with no filesystems mounted.
func NewFakeDriver() *FakeDriver {
	return &FakeDriver{pools: map[string]*fakePool{}, failures: map[string]error{}}
}

// AddPool mounts an empty btrfs filesystem at path, quotas disabled.
func (d *FakeDriver) AddPool(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pools[filepath.Clean(path)] = &fakePool{nextID: 256, subvols: map[string]*fakeSubvol{}, dirs: map[string]bool{}, below: map[string]int{}}
}

// Fail makes every later call of the Driver method op (like
// "CreateSubvolume") on path fail with err, wrapped as the driver wraps
// errors; a nil err ends that.
func (d *FakeDriver) Fail(op, path string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := op + "\x00" + filepath.Clean(path)
	if err == nil {
		delete(d.failures, k)
		return
	}
	d.failures[k] = err
}

// Mutations counts the calls of mutating methods (CreateSubvolume,
// DeleteSubvolume, Snapshot, SetReadOnly, EnableQuota, SetQuota, MkdirAll,
// Rename, RemoveAll) that succeeded.
func (d *FakeDriver) Mutations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mutations
}

// Log lists the mutating calls that succeeded, in order, like
// "CreateSubvolume /tank/projects" or "SetQuota /tank/projects 1073741824".
func (d *FakeDriver) Log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log)
}

// Lookup returns the subvolume at the absolute path, if there is one.
func (d *FakeDriver) Lookup(path string) (reconcile.Subvolume, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.resolve(path)
	if err != nil {
		return reconcile.Subvolume{}, false
	}
	sv, ok := p.subvols[rel]
	if !ok {
		return reconcile.Subvolume{}, false
	}
	return sv.Subvolume, true
}

// SetUsage sets the referenced and exclusive bytes of the subvolume at path,
// as if data had been written to it.
func (d *FakeDriver) SetUsage(path string, referenced, exclusive uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.resolve(path)
	if err != nil {
		return fmt.Errorf("set usage %s: %w", path, err)
	}
	sv, ok := p.subvols[rel]
	if !ok {
		return fmt.Errorf("set usage %s: %w", path, errNotSubvolume)
	}
	sv.qgroup.Referenced, sv.qgroup.Exclusive = referenced, exclusive
	return nil
}

// Touch records a write to the subvolume at path, as if a file in it had
// changed: its generation moves to a new transaction.
func (d *FakeDriver) Touch(path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.resolve(path)
	if err != nil {
		return fmt.Errorf("touch %s: %w", path, err)
	}
	sv, ok := p.subvols[rel]
	switch {
	case !ok:
		return fmt.Errorf("touch %s: %w", path, errNotSubvolume)
	case sv.ReadOnly:
		return fmt.Errorf("touch %s: %w", path, errReadOnly)
	}
	p.gen++
	sv.Generation = p.gen
	return nil
}

// MarkReceived makes the subvolume at path look like a completed btrfs
// receive of the sent subvolume sentUUID: read-only, with sentUUID as its
// received UUID. Send and receive are not modelled; planner tests lay out
// received snapshots with it.
func (d *FakeDriver) MarkReceived(path, sentUUID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.resolve(path)
	if err != nil {
		return fmt.Errorf("mark received %s: %w", path, err)
	}
	sv, ok := p.subvols[rel]
	if !ok {
		return fmt.Errorf("mark received %s: %w", path, errNotSubvolume)
	}
	sv.ReadOnly, sv.ReceivedUUID = true, sentUUID
	return nil
}

// resolve finds the pool holding the absolute path and the path relative to
// its mount ("" for the mount itself).
func (d *FakeDriver) resolve(path string) (*fakePool, string, string, error) {
	if !filepath.IsAbs(path) {
		return nil, "", "", fmt.Errorf("%q is not an absolute path", path)
	}
	path = filepath.Clean(path)
	best := ""
	for mount := range d.pools {
		if (path == mount || strings.HasPrefix(path, mount+"/") || mount == "/") && len(mount) > len(best) {
			best = mount
		}
	}
	if best == "" {
		return nil, "", "", errNotOnPool
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(path, best), "/")
	return d.pools[best], best, rel, nil
}

// begin checks the context and injected failures, and resolves path.
func (d *FakeDriver) begin(ctx context.Context, op, what, path string) (*fakePool, string, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", "", fmt.Errorf("%s %s: %w", what, path, err)
	}
	if err, ok := d.failures[op+"\x00"+filepath.Clean(path)]; ok {
		return nil, "", "", fmt.Errorf("%s %s: %w", what, path, err)
	}
	p, mount, rel, err := d.resolve(path)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s %s: %w", what, path, err)
	}
	return p, mount, rel, nil
}

func (d *FakeDriver) mutated(p *fakePool, entry string) {
	d.mutations++
	d.log = append(d.log, entry)
	p.gen++
}

func (p *fakePool) exists(rel string) bool {
	return rel == "" || p.dirs[rel] || p.subvols[rel] != nil
}

func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// writable reports whether an entry may be added to or removed from the
// directory rel: false when the subvolume holding it is read-only.
func (p *fakePool) writable(rel string) bool {
	for dir := rel; dir != ""; dir = parentOf(dir) {
		if sv := p.subvols[dir]; sv != nil {
			return !sv.ReadOnly
		}
	}
	return true
}

// canCreate checks that rel can be made: a free name in a writable
// directory.
func (p *fakePool) canCreate(rel string) error {
	switch {
	case p.exists(rel):
		return fs.ErrExist
	case !p.exists(parentOf(rel)):
		return fmt.Errorf("parent directory: %w", fs.ErrNotExist)
	case !p.writable(parentOf(rel)):
		return errReadOnly
	}
	return nil
}

func (d *FakeDriver) newSubvol(p *fakePool, rel string) *fakeSubvol {
	d.uuids++
	sv := &fakeSubvol{Subvolume: reconcile.Subvolume{
		ID:         p.nextID,
		Path:       rel,
		UUID:       fmt.Sprintf("00000000-0000-4000-8000-%012x", d.uuids),
		Generation: p.gen + 1,

		CreationGeneration: p.gen + 1,
	}, created: time.Now().UTC().Truncate(time.Second)}
	p.nextID++
	sv.qgroup.Referenced, sv.qgroup.Exclusive = emptySubvolumeBytes, emptySubvolumeBytes
	p.add(rel, sv)
	return sv
}

// Created returns when the subvolume at path was made (the clock then, to
// the second, as btrfs shows it).
func (d *FakeDriver) Created(ctx context.Context, path string) (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.resolve(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("created %s: %w", path, err)
	}
	sv, ok := p.subvols[rel]
	if !ok {
		return time.Time{}, fmt.Errorf("created %s: %w", path, errNotSubvolume)
	}
	return sv.created, nil
}

// IsBtrfs reports whether path is a directory on a mounted FakeDriver pool.
func (d *FakeDriver) IsBtrfs(ctx context.Context, path string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "IsBtrfs", "check btrfs", path)
	if errors.Is(err, errNotOnPool) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return p.exists(rel), nil
}

// Subvolumes lists the subvolumes below pool, by ID, with paths relative to
// pool.
func (d *FakeDriver) Subvolumes(ctx context.Context, pool string) ([]reconcile.Subvolume, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "Subvolumes", "list subvolumes", pool)
	if err != nil {
		return nil, err
	}
	if !p.exists(rel) {
		return nil, fmt.Errorf("list subvolumes %s: %w", pool, fs.ErrNotExist)
	}
	out := make([]reconcile.Subvolume, 0, len(p.subvols))
	for path, sv := range p.subvols {
		if rel != "" {
			var ok bool
			if path, ok = strings.CutPrefix(path, rel+"/"); !ok {
				continue
			}
		}
		s := sv.Subvolume
		s.Path = path
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b reconcile.Subvolume) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// CreateSubvolume makes an empty subvolume at path.
func (d *FakeDriver) CreateSubvolume(ctx context.Context, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "CreateSubvolume", "create subvolume", path)
	if err != nil {
		return err
	}
	if err := p.canCreate(rel); err != nil {
		return fmt.Errorf("create subvolume %s: %w", path, err)
	}
	d.newSubvol(p, rel)
	d.mutated(p, "CreateSubvolume "+path)
	return nil
}

// DeleteSubvolume deletes the subvolume at path and the plain directories in
// it; it refuses a plain directory and a subvolume holding subvolumes.
func (d *FakeDriver) DeleteSubvolume(ctx context.Context, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "DeleteSubvolume", "delete subvolume", path)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("delete subvolume %s: %w", path, err) }
	switch {
	case rel == "":
		return fail(errors.New("the top-level subvolume cannot be deleted"))
	case p.dirs[rel]:
		return fail(errNotSubvolume)
	case p.subvols[rel] == nil:
		return fail(fs.ErrNotExist)
	case !p.writable(parentOf(rel)):
		return fail(errReadOnly)
	}
	var inside []string
	if p.below[rel] > 0 {
		for other := range p.subvols {
			if strings.HasPrefix(other, rel+"/") {
				return fail(fmt.Errorf("%w (%s)", errNested, other))
			}
		}
		for dir := range p.dirs {
			if strings.HasPrefix(dir, rel+"/") {
				inside = append(inside, dir)
			}
		}
	}
	// Deepest first, so each has nothing below it when it goes.
	slices.SortFunc(inside, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, dir := range inside {
		p.remove(dir)
	}
	p.remove(rel)
	d.mutated(p, "DeleteSubvolume "+path)
	return nil
}

// Snapshot snapshots the subvolume src at dst. As in btrfs, plain
// directories are copied and nested subvolumes become empty directories.
func (d *FakeDriver) Snapshot(ctx context.Context, src, dst string, readOnly bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	what := "snapshot " + src + " to"
	sp, smount, srel, err := d.begin(ctx, "Snapshot", "snapshot", src)
	if err != nil {
		return err
	}
	p, mount, rel, err := d.begin(ctx, "Snapshot", what, dst)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("%s %s: %w", what, dst, err) }
	if sp != p || smount != mount {
		return fail(errCrossDevice)
	}
	from := p.subvols[srel]
	if from == nil {
		return fail(fmt.Errorf("source: %w", errNotSubvolume))
	}
	if err := p.canCreate(rel); err != nil {
		return fail(err)
	}
	sv := d.newSubvol(p, rel)
	sv.ParentUUID = from.UUID
	sv.ReadOnly = readOnly
	// As btrfs: a read-only snapshot keeps the source's received UUID, a
	// writable one has none; the snapshot is a change of the source.
	if readOnly {
		sv.ReceivedUUID = from.ReceivedUUID
	}
	from.Generation = sv.CreationGeneration
	sv.qgroup.Referenced, sv.qgroup.Exclusive = from.qgroup.Referenced, emptySubvolumeBytes
	if p.below[srel] > 0 {
		var copied []string
		for dir := range p.dirs {
			if inner, ok := strings.CutPrefix(dir, srel+"/"); ok && p.containing(dir) == srel {
				copied = append(copied, inner)
			}
		}
		for other := range p.subvols {
			if inner, ok := strings.CutPrefix(other, srel+"/"); ok && p.containing(other) == srel {
				copied = append(copied, inner)
			}
		}
		for _, inner := range copied {
			p.add(rel+"/"+inner, nil)
		}
	}
	d.mutated(p, fmt.Sprintf("Snapshot %s %s ro=%t", src, dst, readOnly))
	return nil
}

// containing is the subvolume whose tree rel lies in ("" for the top level).
func (p *fakePool) containing(rel string) string {
	for dir := parentOf(rel); dir != ""; dir = parentOf(dir) {
		if p.subvols[dir] != nil {
			return dir
		}
	}
	return ""
}

// SetReadOnly sets or clears the subvolume's read-only flag.
func (d *FakeDriver) SetReadOnly(ctx context.Context, path string, readOnly bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "SetReadOnly", "set read-only", path)
	if err != nil {
		return err
	}
	sv := p.subvols[rel]
	if sv == nil {
		return fmt.Errorf("set read-only %s: %w", path, errNotSubvolume)
	}
	sv.ReadOnly = readOnly
	d.mutated(p, fmt.Sprintf("SetReadOnly %s %t", path, readOnly))
	return nil
}

// QuotaEnabled reports whether quotas are enabled on the pool.
func (d *FakeDriver) QuotaEnabled(ctx context.Context, pool string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, _, err := d.begin(ctx, "QuotaEnabled", "check quota", pool)
	if err != nil {
		return false, err
	}
	return p.quota, nil
}

// EnableQuota enables quotas on the pool; every subvolume gets its qgroup,
// without a limit.
func (d *FakeDriver) EnableQuota(ctx context.Context, pool string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, _, err := d.begin(ctx, "EnableQuota", "enable quota", pool)
	if err != nil {
		return err
	}
	if !p.quota {
		for _, sv := range p.subvols {
			sv.qgroup.MaxReferenced = 0
		}
	}
	p.quota = true
	d.mutated(p, "EnableQuota "+pool)
	return nil
}

// Qgroups returns the pool's level-0 qgroups by subvolume ID; it fails when
// quotas are disabled, as btrfs qgroup show does.
func (d *FakeDriver) Qgroups(ctx context.Context, pool string) (map[uint64]reconcile.Qgroup, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, _, err := d.begin(ctx, "Qgroups", "list qgroups", pool)
	if err != nil {
		return nil, err
	}
	if !p.quota {
		return nil, fmt.Errorf("list qgroups %s: %w", pool, errNoQuota)
	}
	out := make(map[uint64]reconcile.Qgroup, len(p.subvols))
	for _, sv := range p.subvols {
		out[sv.ID] = sv.qgroup
	}
	return out, nil
}

// SetQuota limits the referenced bytes of the subvolume at path; 0 removes
// the limit. Quotas must be enabled.
func (d *FakeDriver) SetQuota(ctx context.Context, path string, bytes uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "SetQuota", "set quota", path)
	if err != nil {
		return err
	}
	sv := p.subvols[rel]
	switch {
	case !p.quota:
		return fmt.Errorf("set quota %s: %w", path, errNoQuota)
	case sv == nil:
		return fmt.Errorf("set quota %s: %w", path, errNotSubvolume)
	}
	sv.qgroup.MaxReferenced = bytes
	d.mutated(p, fmt.Sprintf("SetQuota %s %d", path, bytes))
	return nil
}

// MkdirAll makes the directory path and its missing parents.
func (d *FakeDriver) MkdirAll(ctx context.Context, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "MkdirAll", "make directory", path)
	if err != nil {
		return err
	}
	var missing []string
	for dir := rel; !p.exists(dir); dir = parentOf(dir) {
		missing = append(missing, dir)
	}
	for _, dir := range slices.Backward(missing) {
		if !p.writable(parentOf(dir)) {
			return fmt.Errorf("make directory %s: %w", path, errReadOnly)
		}
		p.add(dir, nil)
	}
	d.mutated(p, "MkdirAll "+path)
	return nil
}

// Rename moves the subvolume or directory from, and everything below it, to
// to, within one pool; to must not exist. Renaming out of or into a
// read-only subvolume fails.
func (d *FakeDriver) Rename(ctx context.Context, from, to string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	what := "rename " + from + " to"
	p, mount, rel, err := d.begin(ctx, "Rename", "rename", from)
	if err != nil {
		return err
	}
	tp, tmount, trel, err := d.begin(ctx, "Rename", what, to)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("%s %s: %w", what, to, err) }
	switch {
	case p != tp || mount != tmount:
		return fail(errCrossDevice)
	case rel == "" || !p.exists(rel):
		return fail(fmt.Errorf("source: %w", fs.ErrNotExist))
	case trel == rel || strings.HasPrefix(trel, rel+"/"):
		return fail(errors.New("cannot move a directory into itself"))
	case !p.writable(parentOf(rel)):
		return fail(errReadOnly)
	}
	if err := p.canCreate(trel); err != nil {
		return fail(err)
	}
	type entry struct {
		rel string
		sv  *fakeSubvol
	}
	moved := []entry{{rel, p.subvols[rel]}}
	for other, sv := range p.subvols {
		if strings.HasPrefix(other, rel+"/") {
			moved = append(moved, entry{other, sv})
		}
	}
	for dir := range p.dirs {
		if strings.HasPrefix(dir, rel+"/") {
			moved = append(moved, entry{dir, nil})
		}
	}
	// Remove deepest first, add shallowest first, so the counts of what
	// lies below each directory stay right.
	slices.SortFunc(moved, func(a, b entry) int { return cmp.Compare(len(b.rel), len(a.rel)) })
	for _, e := range moved {
		p.remove(e.rel)
	}
	for _, e := range slices.Backward(moved) {
		nrel := trel + strings.TrimPrefix(e.rel, rel)
		if e.sv != nil {
			e.sv.Path = nrel
		}
		p.add(nrel, e.sv)
	}
	d.mutated(p, "Rename "+from+" "+to)
	return nil
}

// Entries lists the plain directories and subvolumes below dir, relative
// to it and sorted, without what is inside a subvolume. (FakeDriver has no
// files.)
func (d *FakeDriver) Entries(ctx context.Context, dir string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "Entries", "list", dir)
	if err != nil {
		return nil, err
	}
	if !p.exists(rel) {
		return nil, fmt.Errorf("list %s: %w", dir, fs.ErrNotExist)
	}
	prefix := rel + "/"
	if rel == "" {
		prefix = ""
	}
	var out []string
	add := func(path string) {
		r, ok := strings.CutPrefix(path, prefix)
		if !ok {
			return
		}
		for up := parentOf(path); up != rel && up != ""; up = parentOf(up) {
			if p.subvols[up] != nil {
				return // inside a subvolume below dir
			}
		}
		out = append(out, r)
	}
	for path := range p.subvols {
		add(path)
	}
	for path := range p.dirs {
		add(path)
	}
	slices.Sort(out)
	return out, nil
}

// RemoveAll removes the plain directory at path and the plain directories
// below it; it fails, removing nothing, when path is a subvolume or holds
// one.
func (d *FakeDriver) RemoveAll(ctx context.Context, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, _, rel, err := d.begin(ctx, "RemoveAll", "remove", path)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("remove %s: %w", path, err) }
	switch {
	case rel == "":
		return fail(errors.New("the top-level subvolume cannot be removed"))
	case p.subvols[rel] != nil:
		return fail(errNotPlain)
	case !p.dirs[rel]:
		return nil
	case !p.writable(parentOf(rel)):
		return fail(errReadOnly)
	}
	var inside []string
	for other := range p.subvols {
		if strings.HasPrefix(other, rel+"/") {
			return fail(fmt.Errorf("%w (%s)", errNotPlain, other))
		}
	}
	for dir := range p.dirs {
		if strings.HasPrefix(dir, rel+"/") {
			inside = append(inside, dir)
		}
	}
	slices.SortFunc(inside, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, dir := range inside {
		p.remove(dir)
	}
	p.remove(rel)
	d.mutated(p, "RemoveAll "+path)
	return nil
}

// Send is not modelled: it fails, writing nothing.
func (d *FakeDriver) Send(ctx context.Context, snapshot, parent string, w io.Writer) error {
	return fmt.Errorf("send %s: %w", snapshot, errNotModelled)
}

// Receive is not modelled: it fails, reading nothing.
func (d *FakeDriver) Receive(ctx context.Context, dir string, r io.Reader) error {
	return fmt.Errorf("receive into %s: %w", dir, errNotModelled)
}

var _ reconcile.Driver = (*FakeDriver)(nil)
