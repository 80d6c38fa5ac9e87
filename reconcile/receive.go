package reconcile

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// Receiver is the receiving side of replication. It runs on every storage
// appliance and receives the shares it is the target of: those whose
// replication names one of its pools, and, after a failover, those it was
// active for (the target is the other appliance of the pair than the
// active one, on its pool for the share).
//
// A receive lands under its staging name (the sent snapshot's stamp) and is
// renamed to its final name, <share>.<stamp>, only once it is verified: the
// stream ended with btrfs's end command and nothing after it, btrfs
// receive succeeded, and the new subvolume is read-only with the sent
// snapshot's UUID as its received UUID, and the stream changed nothing in
// the directory beside it. Whatever a failed receive created, the partial
// subvolume and anything a crafted stream wrote beside it, is deleted
// before Receive returns, and CleanStaging deletes the subvolumes a crash
// left. So a final name always means a complete snapshot.
type Receiver struct {
	// Appliance is this appliance's name in the spec.
	Appliance string
	// Driver speaks to btrfs.
	Driver Driver
	// Trail records an attempt (the agent stores it in the replicated
	// state); nil records nothing. It is called with a context that is not
	// cancelled with the receive's.
	Trail func(ctx context.Context, e TrailEntry)
	// Active returns which appliance holds the share's writable copy and
	// at which failover epoch; nil means the spec's appliance at epoch 0.
	// A stream is received only from the active appliance, by the other
	// appliance of the pair, and is refused when its epoch is older than
	// this one. It is the one source of the epoch.
	Active func(share string) schema.Activation
	// Log receives what the receiver does; nil discards it.
	Log *slog.Logger
	// Now is the clock of trails and retention; time.Now when nil.
	Now func() time.Time

	// Check runs a drill's check command (see Drill); ExecCheck when nil.
	Check CheckFunc

	mu     sync.Mutex
	busy   map[string]bool // shares being received or cleaned
	drills map[string]bool // shares being drilled
}

func (rv *Receiver) now() time.Time {
	if rv.Now != nil {
		return rv.Now()
	}
	return time.Now()
}

func (rv *Receiver) log() *slog.Logger {
	if rv.Log != nil {
		return rv.Log
	}
	return slog.New(slog.DiscardHandler)
}

// claim marks share busy, unless it already is.
func (rv *Receiver) claim(share string) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.busy[share] {
		return false
	}
	if rv.busy == nil {
		rv.busy = map[string]bool{}
	}
	rv.busy[share] = true
	return true
}

func (rv *Receiver) release(share string) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	delete(rv.busy, share)
}

// target resolves share as one this appliance receives, with its current
// activation, and returns its pool's mount path. Its errors wrap
// ErrRefused.
func (rv *Receiver) target(spec *schema.Spec, share string) (*schema.Share, schema.Placement, string, error) {
	if spec == nil {
		return nil, schema.Placement{}, "", fmt.Errorf("%w: this appliance has no spec yet", ErrRefused)
	}
	sh := spec.Share(share)
	switch {
	case sh == nil:
		return nil, schema.Placement{}, "", fmt.Errorf("%w: share %q is not in the spec", ErrRefused, share)
	case sh.Replication == nil:
		return sh, schema.Placement{}, "", fmt.Errorf("%w: share %s has no replication in the spec", ErrRefused, share)
	}
	act, ok := placeOf(rv.Active, sh)
	to, pool := act.Replica.Appliance, act.Replica.Pool
	switch {
	case !ok:
		return sh, act, "", fmt.Errorf("%w: share %s is active on %s since epoch %d, which is neither its appliance %s nor its replica %s", ErrRefused, share, act.Active.Appliance, act.Epoch, sh.Appliance, sh.Replication.To)
	case to != rv.Appliance && act.Active.Appliance == sh.Appliance:
		return sh, act, "", fmt.Errorf("%w: share %s replicates to %s, not to this appliance %s", ErrRefused, share, to, rv.Appliance)
	case to != rv.Appliance:
		return sh, act, "", fmt.Errorf("%w: share %s replicates to %s, not to this appliance %s (active on %s since epoch %d)", ErrRefused, share, to, rv.Appliance, act.Active.Appliance, act.Epoch)
	}
	a := spec.Appliance(rv.Appliance)
	if a == nil || a.Pool(pool) == nil {
		return sh, act, "", fmt.Errorf("%w: share %s replicates to pool %s/%s, which %s does not have in the spec", ErrRefused, share, to, pool, rv.Appliance)
	}
	return sh, act, a.Pool(pool).Path, nil
}

// Held lists the snapshots of share on this appliance that can be the
// parent of an incremental: its completed received snapshots (final name,
// read-only, received UUID) and, for after a failover, its own
// replication snapshots of the share (read-only, named by a stamp), which
// the new active's received snapshots are copies of. Paths are relative
// to the pool. It fails, wrapping ErrRefused, when this appliance is not
// the share's target.
func (rv *Receiver) Held(ctx context.Context, spec *schema.Spec, share string) ([]Subvolume, error) {
	_, _, pool, err := rv.target(spec, share)
	if err != nil {
		return nil, fmt.Errorf("received snapshots of %s: %w", share, err)
	}
	if err := rv.checkPool(ctx, pool); err != nil {
		return nil, fmt.Errorf("received snapshots of %s: %w", share, err)
	}
	subs, err := rv.Driver.Subvolumes(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("received snapshots of %s: %w", share, err)
	}
	return heldSnapshots(subs, share), nil
}

// heldSnapshots are the subvolumes Held lists, among a pool's.
func heldSnapshots(subs []Subvolume, share string) []Subvolume {
	var out []Subvolume
	for _, s := range receivedSnapshots(subs, share) {
		if s.complete() {
			out = append(out, s.sv)
		}
	}
	for _, s := range replicationSnapshots(subs, share) {
		out = append(out, s.sv)
	}
	return out
}

// checkPool fails unless pool is a mounted btrfs filesystem: an unmounted
// pool's directory must not receive onto the filesystem below.
func (rv *Receiver) checkPool(ctx context.Context, pool string) error {
	return CheckPoolMounted(ctx, rv.Driver, pool)
}

// receivedSnap is one subvolume in a share's received directory.
type receivedSnap struct {
	sv    Subvolume
	name  string    // relative to the received directory
	time  time.Time // the stamp of a final name
	final bool      // named <share>.<stamp>, directly in the directory
}

// complete says the subvolume is a completed receive: final name,
// read-only, with a received UUID.
func (s receivedSnap) complete() bool {
	return s.final && s.sv.ReadOnly && s.sv.ReceivedUUID != ""
}

// receivedSnapshots lists every subvolume under the share's received
// directory, oldest final name first, the others after.
func receivedSnapshots(subs []Subvolume, share string) []receivedSnap {
	prefix := ReceivedDir + "/" + share + "/"
	var out []receivedSnap
	for _, sv := range subs {
		name, ok := strings.CutPrefix(sv.Path, prefix)
		if !ok {
			continue
		}
		s := receivedSnap{sv: sv, name: name}
		if !strings.Contains(name, "/") {
			s.time, s.final = parseSnapshotName(share, name)
		}
		out = append(out, s)
	}
	slices.SortStableFunc(out, func(a, b receivedSnap) int {
		if a.final != b.final {
			if a.final {
				return -1
			}
			return 1
		}
		return a.time.Compare(b.time)
	})
	return out
}

// Receive receives one replication of a share from peer, the sending
// appliance as its TLS certificate names it, and records the attempt.
//
// It refuses (ErrRefused, recorded as refused, reading nothing of body and
// writing nothing) unless the spec has the share, the header's epoch is
// not older than the share's, peer is the share's active appliance (the
// spec's, or the replica after a failover), this appliance is the other
// one of the pair, the header agrees on the sender and names a proper
// snapshot. It refuses a second receive of a share while one runs
// (ErrBusy).
//
// Otherwise it deletes incomplete receives of the share, checks that it
// holds the parent of an incremental (see Held), runs btrfs receive
// into <pool>/.fleetctl/received/<share>/, verifies the result and renames
// it to <share>.<stamp>; then it prunes the received snapshots by the
// share's replication retention and keep_min, never deleting the newest,
// which is the parent of the next incremental. Anything a failed receive
// created is deleted before Receive returns.
//
// body must end (io.EOF) where the sender's stream ends and fail where it
// fails. Receive reads it up to its end when it succeeds; when it fails it
// stops reading (a Read in progress may finish later). It never closes
// body.
func (rv *Receiver) Receive(ctx context.Context, spec *schema.Spec, peer string, h SendHeader, body io.Reader) (ReceiveResult, error) {
	e := TrailEntry{
		ID: h.ID, Share: h.Share, Side: SideReceive, From: peer, To: rv.Appliance, Start: rv.now(),
		Kind: h.Kind(), Parent: h.Parent, Snapshot: h.Snapshot,
	}
	fail := func(result string, err error) (ReceiveResult, error) {
		err = fmt.Errorf("receive %s from %s: %w", h.Share, peer, err)
		e.End, e.Result, e.Error = rv.now(), result, err.Error()
		rv.record(ctx, e)
		rv.log().Warn("receive "+result, "share", h.Share, "from", peer, "snapshot", h.Snapshot, "bytes", e.Bytes, "err", err)
		return ReceiveResult{}, err
	}
	sh, pool, err := rv.authorize(spec, peer, h)
	if err != nil {
		if sh == nil {
			// Not a share of this fleet: nothing to attach a trail to.
			rv.log().Warn("receive refused", "share", h.Share, "from", peer, "err", err)
			return ReceiveResult{}, fmt.Errorf("receive %s from %s: %w", h.Share, peer, err)
		}
		return fail(ResultRefused, err)
	}
	if !rv.claim(sh.Name) {
		return fail(ResultRefused, ErrBusy)
	}
	defer rv.release(sh.Name)

	res, pruneErr, err := rv.receive(ctx, sh, pool, h, body, &e.Bytes)
	if err != nil {
		return fail(ResultFailed, err)
	}
	e.End, e.Result = rv.now(), ResultOK
	if pruneErr != nil {
		e.Error = "received, but pruning old received snapshots failed: " + pruneErr.Error()
		rv.log().Warn("pruning received snapshots failed", "share", sh.Name, "err", pruneErr)
	}
	rv.record(ctx, e)
	rv.log().Info("received", "share", sh.Name, "from", peer, "kind", e.Kind, "name", res.Name, "parent", h.Parent,
		"bytes", res.Bytes, "took", e.End.Sub(e.Start).Round(time.Millisecond))
	return res, nil
}

func (rv *Receiver) record(ctx context.Context, e TrailEntry) {
	if rv.Trail != nil {
		rv.Trail(context.WithoutCancel(ctx), e)
	}
}

// authorize checks that peer may send h to this appliance. Its errors wrap
// ErrRefused; sh is nil when the share is not in the spec.
func (rv *Receiver) authorize(spec *schema.Spec, peer string, h SendHeader) (*schema.Share, string, error) {
	// The epoch first: a stream from before a failover is refused as
	// such, whatever roles its sender still believes in.
	if spec != nil {
		if sh := spec.Share(h.Share); sh != nil {
			if act, _ := placeOf(rv.Active, sh); h.Epoch < act.Epoch {
				return sh, "", fmt.Errorf("%w: the stream is from epoch %d of share %s, which is at epoch %d (active on %s)", ErrRefused, h.Epoch, sh.Name, act.Epoch, act.Active.Appliance)
			}
		}
	}
	sh, act, pool, err := rv.target(spec, h.Share)
	if err != nil {
		return sh, "", err
	}
	switch {
	case sh.State == schema.StateAbsent:
		return sh, "", fmt.Errorf("%w: share %s is marked state: absent", ErrRefused, sh.Name)
	case act.Active.Appliance != peer && act.Epoch == 0:
		return sh, "", fmt.Errorf("%w: share %s is replicated from %s, not from %s", ErrRefused, sh.Name, act.Active.Appliance, peer)
	case act.Active.Appliance != peer:
		return sh, "", fmt.Errorf("%w: share %s is replicated from %s, active since epoch %d, not from %s", ErrRefused, sh.Name, act.Active.Appliance, act.Epoch, peer)
	case h.From != "" && h.From != peer:
		return sh, "", fmt.Errorf("%w: the header says it comes from %s, but the sender is %s", ErrRefused, h.From, peer)
	case h.ID == "" || len(h.ID) > 64:
		return sh, "", fmt.Errorf("%w: the header's ID %q is not 1 to 64 characters", ErrRefused, h.ID)
	}
	if _, ok := parseStamp(h.Snapshot); !ok {
		return sh, "", fmt.Errorf("%w: the header's snapshot %q is not a stamp like 20261125T084600Z", ErrRefused, h.Snapshot)
	}
	if h.Parent != "" {
		if _, ok := parseStamp(h.Parent); !ok {
			return sh, "", fmt.Errorf("%w: the header's parent %q is not a stamp like 20261125T084600Z", ErrRefused, h.Parent)
		}
	}
	return sh, pool, nil
}

// receive does the work of an authorized receive; *bytes follows the
// stream's size. pruneErr is why pruning failed after a good receive.
func (rv *Receiver) receive(ctx context.Context, sh *schema.Share, pool string, h SendHeader, body io.Reader, bytes *int64) (res ReceiveResult, pruneErr, err error) {
	share := sh.Name
	dir := filepath.Join(pool, ReceivedDir, share)
	staging := ReceivedDir + "/" + share + "/" + h.Snapshot
	final := share + "." + h.Snapshot

	if err := rv.checkPool(ctx, pool); err != nil {
		return res, nil, err
	}
	if err := rv.Driver.MkdirAll(ctx, dir); err != nil {
		return res, nil, err
	}
	if err := rv.cleanShare(ctx, pool, share); err != nil {
		return res, nil, fmt.Errorf("delete incomplete receives first: %w", err)
	}
	subs, err := rv.Driver.Subvolumes(ctx, pool)
	if err != nil {
		return res, nil, err
	}
	for _, s := range receivedSnapshots(subs, share) {
		if s.name == final {
			return res, nil, fmt.Errorf("%s already holds %s", rv.Appliance, filepath.Join(dir, final))
		}
	}
	// btrfs receive finds the parent by received UUID, then by UUID,
	// anywhere on the filesystem; it must be one of the share's.
	if h.ParentUUID != "" && !holds(heldSnapshots(subs, share), h.ParentUUID) {
		return res, nil, fmt.Errorf("%s no longer holds the parent %s (UUID %s) of this incremental; the next attempt will ask what it holds", rv.Appliance, h.Parent, h.ParentUUID)
	}
	before, err := rv.snapshotDir(ctx, subs, share, dir)
	if err != nil {
		return res, nil, err
	}

	// Whatever this receive created is deleted when it fails, even when
	// the failure is that ctx ended.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	undo := func(cause error) error { return rv.undo(cleanup, pool, share, dir, before, cause) }

	check := newStreamCheck(body)
	err = rv.Driver.Receive(ctx, dir, check)
	if err == nil {
		err = check.finish()
	}
	check.close()
	*bytes = check.count()
	if err != nil {
		return res, nil, undo(err)
	}

	ch, err := rv.changes(ctx, pool, share, dir, before)
	if err != nil {
		return res, nil, undo(err)
	}
	var got *Subvolume
	var extra []string
	for _, s := range ch.created {
		if s.sv.Path == staging {
			got = &s.sv
		} else {
			extra = append(extra, s.name)
		}
	}
	switch {
	case got == nil:
		return res, nil, undo(fmt.Errorf("btrfs receive succeeded but created no %s (it created %q)", h.Snapshot, extra))
	case len(extra) > 0:
		return res, nil, undo(fmt.Errorf("the stream created %q besides %s", extra, h.Snapshot))
	case len(ch.moved) > 0 || len(ch.gone) > 0:
		return res, nil, undo(fmt.Errorf("the stream renamed or deleted earlier receives: %s", ch.tampered()))
	case len(ch.strays) > 0:
		return res, nil, undo(fmt.Errorf("the stream wrote %q beside %s, outside its subvolume", ch.strays, h.Snapshot))
	case !got.ReadOnly || got.ReceivedUUID == "":
		return res, nil, undo(fmt.Errorf("btrfs receive succeeded but left %s writable or without a received UUID: an incomplete receive", h.Snapshot))
	case h.UUID != "" && got.ReceivedUUID != h.UUID:
		return res, nil, undo(fmt.Errorf("received %s has received UUID %s, but the header says %s", h.Snapshot, got.ReceivedUUID, h.UUID))
	}
	if err := rv.Driver.Rename(ctx, filepath.Join(pool, staging), filepath.Join(dir, final)); err != nil {
		return res, nil, undo(err)
	}
	res = ReceiveResult{Name: final, ReceivedUUID: got.ReceivedUUID, Bytes: check.count()}
	return res, rv.prune(cleanup, sh, pool, final), nil
}

// dirState is what a share's received directory held before a receive:
// its subvolumes, by ID, with their paths relative to the pool, and every
// other entry below it (not inside a subvolume), relative to it.
type dirState struct {
	subvols map[uint64]string
	entries map[string]bool
}

// snapshotDir records what the received directory dir holds; subs are
// the pool's subvolumes.
func (rv *Receiver) snapshotDir(ctx context.Context, subs []Subvolume, share, dir string) (dirState, error) {
	st := dirState{subvols: map[uint64]string{}, entries: map[string]bool{}}
	names := map[string]bool{}
	for _, s := range receivedSnapshots(subs, share) {
		st.subvols[s.sv.ID] = s.sv.Path
		names[s.name] = true
	}
	entries, err := rv.Driver.Entries(ctx, dir)
	if err != nil {
		return st, err
	}
	for _, e := range entries {
		// A subvolume's name is not kept as an entry: should a stream
		// rename the subvolume, whatever takes its name is the stream's.
		if !names[e] {
			st.entries[e] = true
		}
	}
	return st, nil
}

// dirChanges is what a receive changed in the share's received directory.
type dirChanges struct {
	created []receivedSnap    // new subvolumes
	moved   map[string]string // earlier subvolumes renamed: from the old path to the new, relative to the pool
	gone    []string          // earlier subvolumes no longer there, relative to the pool
	strays  []string          // new files, directories and symlinks, relative to dir; none below another
}

func (c dirChanges) tampered() string {
	var s []string
	for from, to := range c.moved {
		s = append(s, fmt.Sprintf("%s renamed to %s", from, to))
	}
	slices.Sort(s)
	for _, p := range c.gone {
		s = append(s, p+" deleted")
	}
	return strings.Join(s, ", ")
}

// changes compares the received directory dir with what it held before.
func (rv *Receiver) changes(ctx context.Context, pool, share, dir string, before dirState) (dirChanges, error) {
	var ch dirChanges
	subs, err := rv.Driver.Subvolumes(ctx, pool)
	if err != nil {
		return ch, err
	}
	names := map[string]bool{}
	seen := map[uint64]bool{}
	for _, s := range receivedSnapshots(subs, share) {
		names[s.name] = true
		old, ok := before.subvols[s.sv.ID]
		switch {
		case !ok:
			ch.created = append(ch.created, s)
		case old != s.sv.Path:
			if ch.moved == nil {
				ch.moved = map[string]string{}
			}
			ch.moved[old] = s.sv.Path
		}
		seen[s.sv.ID] = true
	}
	for id, path := range before.subvols {
		if !seen[id] {
			ch.gone = append(ch.gone, path)
		}
	}
	slices.Sort(ch.gone)
	entries, err := rv.Driver.Entries(ctx, dir)
	if err != nil {
		return ch, err
	}
	stray := map[string]bool{}
	for _, e := range entries { // sorted: a directory before what it holds
		if before.entries[e] || names[e] || strayBelow(stray, e) {
			continue
		}
		stray[e] = true
		ch.strays = append(ch.strays, e)
	}
	return ch, nil
}

// strayBelow says whether path lies in one of the stray directories.
func strayBelow(stray map[string]bool, path string) bool {
	for d := filepath.Dir(path); d != "."; d = filepath.Dir(d) {
		if stray[d] {
			return true
		}
	}
	return false
}

// undo puts the received directory dir back as it was before a failed
// receive, as far as it can: it deletes the subvolumes the receive
// created (deepest first), removes every file, directory and symlink that
// appeared beside them, and renames earlier receives the stream renamed
// back. Earlier receives are never deleted. It returns cause, with what
// could not be undone.
func (rv *Receiver) undo(ctx context.Context, pool, share, dir string, before dirState, cause error) error {
	ch, err := rv.changes(ctx, pool, share, dir, before)
	if err != nil {
		return fmt.Errorf("%w; and finding what it created failed (CleanStaging will delete its subvolumes): %w", cause, err)
	}
	var errs []error
	// Deepest first, so nothing still holds a nested subvolume.
	slices.SortFunc(ch.created, func(a, b receivedSnap) int { return len(b.sv.Path) - len(a.sv.Path) })
	for _, s := range ch.created {
		if err := rv.Driver.DeleteSubvolume(ctx, filepath.Join(pool, s.sv.Path)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range ch.strays {
		path := filepath.Join(dir, s)
		rv.log().Warn("removing what a failed receive wrote outside its subvolume", "share", share, "path", path)
		if err := rv.Driver.RemoveAll(ctx, path); err != nil {
			errs = append(errs, err)
		}
	}
	for from, to := range ch.moved {
		if err := rv.Driver.Rename(ctx, filepath.Join(pool, to), filepath.Join(pool, from)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(ch.gone) > 0 {
		errs = append(errs, fmt.Errorf("the stream deleted earlier receives %q", ch.gone))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w; and undoing what it did failed (CleanStaging will delete its subvolumes): %w", cause, err)
	}
	return cause
}

// prune deletes the share's received snapshots that its replication
// retention and keep_min no longer keep. The newest is always kept (the
// next incremental's parent), and so is keep, the one just received.
func (rv *Receiver) prune(ctx context.Context, sh *schema.Share, pool, keep string) error {
	subs, err := rv.Driver.Subvolumes(ctx, pool)
	if err != nil {
		return err
	}
	var snaps []receivedSnap
	for _, s := range receivedSnapshots(subs, sh.Name) {
		if s.complete() {
			snaps = append(snaps, s)
		}
	}
	if len(snaps) == 0 {
		return nil
	}
	times := make([]time.Time, len(snaps))
	for i, s := range snaps {
		times[i] = s.time
	}
	r := sh.Replication
	kept := Keep(times, r.Retention, max(r.KeepMin, schema.DefaultKeepMin), rv.now())
	kept[len(snaps)-1] = true // snaps are oldest first
	var errs []error
	for i, s := range snaps {
		if kept[i] || s.name == keep {
			continue
		}
		if err := rv.Driver.DeleteSubvolume(ctx, filepath.Join(pool, s.sv.Path)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CleanStaging deletes the incomplete receives of every share this
// appliance receives now (see Active): every subvolume in the share's
// received directory but the completed receives (final name, read-only,
// received UUID). A receive that runs meanwhile is left alone; it cleans
// up after itself. The agent calls it at start, for what a crash left
// behind.
func (rv *Receiver) CleanStaging(ctx context.Context, spec *schema.Spec) error {
	if spec == nil {
		return nil
	}
	var errs []error
	for _, sh := range spec.Shares {
		if sh.Replication == nil {
			continue
		}
		_, _, pool, err := rv.target(spec, sh.Name)
		if err != nil {
			// Not received here now; worth saying only when this is the
			// target but the spec lacks its pool.
			if pl, ok := placeOf(rv.Active, &sh); ok && pl.Replica.Appliance == rv.Appliance {
				errs = append(errs, err)
			}
			continue
		}
		if ok, err := rv.Driver.IsBtrfs(ctx, pool); err != nil || !ok {
			continue // nothing of ours there; the reconciler reports the pool
		}
		if !rv.claim(sh.Name) {
			continue
		}
		err = rv.cleanShare(ctx, pool, sh.Name)
		rv.release(sh.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("clean incomplete receives of %s: %w", sh.Name, err))
		}
	}
	return errors.Join(errs...)
}

// cleanShare deletes the incomplete receives of one share, deepest first.
func (rv *Receiver) cleanShare(ctx context.Context, pool, share string) error {
	subs, err := rv.Driver.Subvolumes(ctx, pool)
	if err != nil {
		return err
	}
	var junk []receivedSnap
	for _, s := range receivedSnapshots(subs, share) {
		if !s.complete() {
			junk = append(junk, s)
		}
	}
	slices.SortFunc(junk, func(a, b receivedSnap) int { return len(b.sv.Path) - len(a.sv.Path) })
	var errs []error
	for _, s := range junk {
		path := filepath.Join(pool, s.sv.Path)
		rv.log().Info("deleting an incomplete receive", "share", share, "path", path, "read_only", s.sv.ReadOnly, "received_uuid", s.sv.ReceivedUUID)
		if err := rv.Driver.DeleteSubvolume(ctx, path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// The btrfs send stream format (btrfs-progs send.h, kernel send.h): a
// header of the magic and a little-endian 32-bit version, then commands,
// each a 10-byte header (32-bit payload length, 16-bit command, 32-bit
// CRC) and its payload. A complete stream of one subvolume ends with the
// end command, which has no payload. Versions 1 to 3 share this framing.
const (
	sendMagic     = "btrfs-stream\x00"
	sendHeaderLen = len(sendMagic) + 4
	sendCmdLen    = 10
	sendCmdEnd    = 21
)

// errStreamClosed is what a streamCheck gives a Read after the receive
// ended.
var errStreamClosed = errors.New("the receive has ended")

// streamCheck passes a btrfs send stream through, following its framing,
// and ends it (io.EOF) right after the end command, so btrfs receive
// stops there and any data after it is found. Without the end command a
// stream is short, whatever btrfs receive says: older btrfs-progs accept a
// stream cut at a command boundary.
type streamCheck struct {
	r io.Reader

	mu     sync.Mutex
	n      int64 // bytes passed on
	head   [sendHeaderLen]byte
	headN  int
	cmd    [sendCmdLen]byte
	cmdN   int
	skip   int64 // payload bytes of the current command still to pass
	ended  bool  // the end command was passed on
	over   int   // bytes read past the end command
	err    error // the framing is wrong
	closed bool
}

func newStreamCheck(r io.Reader) *streamCheck { return &streamCheck{r: r} }

// Read passes on the stream up to the end of its end command.
func (s *streamCheck) Read(p []byte) (int, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return 0, errStreamClosed
	case s.err != nil:
		s.mu.Unlock()
		return 0, s.err
	case s.ended:
		s.mu.Unlock()
		return 0, io.EOF
	}
	s.mu.Unlock()
	// Not under the lock: a Read may block, and close must not.
	n, err := s.r.Read(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStreamClosed
	}
	k, ferr := s.scan(p[:n])
	s.n += int64(k)
	switch {
	case ferr != nil:
		s.err = ferr
		return k, ferr
	case s.ended:
		s.over += n - k
		return k, io.EOF
	case err == io.EOF && s.headN < sendHeaderLen && s.n == 0:
		return k, fmt.Errorf("the stream is empty: %w", io.ErrUnexpectedEOF)
	}
	return k, err
}

// scan follows the framing through b, which comes next in the stream, and
// returns how much of b belongs to the stream: all of it, unless the end
// command ends within it.
func (s *streamCheck) scan(b []byte) (int, error) {
	i := 0
	for i < len(b) {
		switch {
		case s.headN < sendHeaderLen:
			c := copy(s.head[s.headN:], b[i:])
			s.headN += c
			i += c
			if s.headN == sendHeaderLen {
				if string(s.head[:len(sendMagic)]) != sendMagic {
					return i, fmt.Errorf("not a btrfs send stream: it starts with %q", s.head[:len(sendMagic)])
				}
				if v := binary.LittleEndian.Uint32(s.head[len(sendMagic):]); v == 0 {
					return i, fmt.Errorf("btrfs send stream version %d", v)
				}
			}
		case s.skip > 0:
			c := int(min(int64(len(b)-i), s.skip))
			s.skip -= int64(c)
			i += c
		default:
			c := copy(s.cmd[s.cmdN:], b[i:])
			s.cmdN += c
			i += c
			if s.cmdN < sendCmdLen {
				continue
			}
			s.cmdN = 0
			length := binary.LittleEndian.Uint32(s.cmd[0:4])
			if binary.LittleEndian.Uint16(s.cmd[4:6]) == sendCmdEnd {
				if length != 0 {
					return i, fmt.Errorf("malformed btrfs send stream: an end command with %d bytes of payload", length)
				}
				s.ended = true
				return i, nil
			}
			s.skip = int64(length)
		}
	}
	return i, nil
}

// finish checks, after btrfs receive succeeded, that the stream ended with
// its end command and that the sender's stream ends right there, cleanly.
func (s *streamCheck) finish() error {
	s.mu.Lock()
	ended, over, n, ferr := s.ended, s.over, s.n, s.err
	s.mu.Unlock()
	switch {
	case ferr != nil:
		return ferr
	case !ended:
		return fmt.Errorf("the stream ended after %d bytes without btrfs's end command: it is incomplete", n)
	case over > 0:
		return fmt.Errorf("the stream goes on after btrfs's end command: %d bytes more", over)
	}
	var b [1]byte
	k, err := io.ReadFull(s.r, b[:])
	switch {
	case k > 0:
		return errors.New("the stream goes on after btrfs's end command")
	case err == io.EOF:
		return nil
	default:
		return fmt.Errorf("the sender's stream failed after btrfs's end command: %w", err)
	}
}

// close makes later Reads fail, so a copy btrfs receive left behind stops.
func (s *streamCheck) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// count is the stream bytes passed on.
func (s *streamCheck) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
