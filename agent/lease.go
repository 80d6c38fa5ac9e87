package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/agent/fence"
	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file is the appliance's side of the lease (the leader's side is
// witness.go). Every agent that manages btrfs renews its lease with the
// leader every LeaseInterval, through its own API, which redirects it to the
// leader; renewals overlap, so a slow answer does not hold back the next.
// It counts its lease from when it sent the newest renewal the leader
// answered (before the first answer, from its first attempt, never from
// before its state named it a storage appliance), so it always starts
// counting before the leader does. When the lease is older than the
// policy's fence_after, the agent fences itself: every replicated share it
// is active for is made read-only, before the leader's failover_after can
// pass. It lifts the fence, through the one door to writable
// (writedoor.go), once a renewal sent after fencing is answered, it has
// applied the log as far as the leader had, and the share's epoch has not
// moved; if it moved, the share failed over and its copy stays read-only.
//
// The agent also starts fenced (startFencesFromFiles, then
// startFencesFromState until it has caught up), fences on stop
// (FenceActive), keeps what it is active for and what it fenced in the
// data dir (package fence: active.json, fenced.json), and tells its guard
// process every fence.BeatInterval what it holds writable (beatLoop), so
// that the guard fences if the agent dies or hangs. Apart from the lease,
// the agent keeps its copy of a share that failed over to another
// appliance read-only, so an appliance that crashed before it could fence
// does not come back with a second writable copy.

// leaseTimeout bounds one renewal: a renewal answered later than this is
// not counted, and the next one is sent.
const leaseTimeout = 2 * time.Second

// fenceTick is how often the agent compares its lease's age with
// fence_after.
const fenceTick = 250 * time.Millisecond

// leaseState is the appliance's side of its lease.
type leaseState struct {
	mu sync.Mutex
	// started is when the agent first tried to renew (when its spec first
	// named it a storage appliance); zero before. answered is when the
	// newest answered renewal was sent, index the leader's applied index
	// in its answer and rtt its round trip.
	started  time.Time
	answered time.Time
	index    uint64
	rtt      time.Duration
	failing  bool // the newest renewal failed: log only transitions
	// fenced are the shares this appliance fenced, by share: made by the
	// fence loop, at start, on stop and by a failed switchover; lifted
	// only by the fence loop (unfence).
	fenced map[string]heldFence
	// fenceFailed are the shares whose fencing failed and was logged.
	fenceFailed map[string]bool
	// changed wakes the status reporter when fenced changed.
	changed chan struct{}
	// demotedChecked is the failover state keepDemotedReadOnly last went
	// through without error; checked says it did once.
	demotedChecked map[string]store.FailoverState
	checked        bool
	// synced is closed once this agent has caught up with the fleet since
	// it started: a renewal it sent was answered and it has applied the
	// log as far as the leader had then. Until then its copy of the state
	// may be stale, so it fences what it is active for
	// (startFencesFromState) and the reconciler waits.
	synced     chan struct{}
	syncedDone bool
	// activeSaved is what FileActive last said, under activeMu.
	activeMu    sync.Mutex
	activeSaved fence.Records
	// storageSince is when this agent first saw its state name it a
	// storage appliance (zero while it does not): until a renewal is
	// answered the lease counts from then at the earliest, as the leader
	// counts an appliance from when it first sees it in the spec.
	storageSince time.Time
	// writeMu is the door through which a share becomes writable
	// (openForWrite); fencing on stop takes it too.
	writeMu sync.Mutex
}

// heldFence is one share this appliance made read-only.
type heldFence struct {
	path  string    // the share's subvolume
	epoch uint64    // the share's epoch when it was fenced
	at    time.Time // when (for a fence loaded at start: the start)
}

// startLease starts the lease client, the fence loop, the guard's
// heartbeat and the status reporter; they run until ctx ends and do
// something only while the stored spec names this appliance as a storage
// appliance. early are the fences startFencesFromFiles made.
func (n *Node) startLease(ctx context.Context, early map[string]heldFence) {
	l := &n.lease
	l.mu.Lock()
	l.fenced = early
	l.fenceFailed = map[string]bool{}
	l.changed = make(chan struct{}, 1)
	l.mu.Unlock()
	n.startFencesFromState(ctx)
	n.saveFences() // what the agent starts fenced with, from files or state
	loops := []func(context.Context){n.renewLoop, n.fenceLoop, n.reportLoop}
	if n.cfg.Guard != nil {
		loops = append(loops, n.beatLoop)
	}
	for _, loop := range loops {
		n.goLoop(func() { loop(ctx) })
	}
}

// isStorage says whether spec names appliance as a storage appliance.
func isStorage(spec *schema.Spec, appliance string) bool {
	if spec == nil {
		return false
	}
	a := spec.Appliance(appliance)
	return a != nil && a.Role != schema.RoleWitness
}

// renewLoop sends a renewal every LeaseInterval. Renewals overlap: one
// answered late (up to leaseTimeout) does not hold back the next, so a
// single slow answer on a healthy fleet cannot age the lease by more than
// an interval.
func (n *Node) renewLoop(ctx context.Context) {
	var c *client.Client
	var inflight sync.WaitGroup
	defer func() {
		inflight.Wait()
		if c != nil {
			c.Close()
		}
	}()
	t := time.NewTicker(LeaseInterval)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		start := time.Now()
		// Every agent that manages btrfs renews, storage appliance or not
		// yet: the day the spec names it one, its lease is already fresh.
		if !isStorage(n.fsm.State().Spec, n.cfg.Name) && n.cfg.Driver == nil {
			continue
		}
		if c == nil {
			var err error
			if c, err = client.NewClient(n.cfg.Advertise, n.credentials(), n.cfg.Name); err != nil {
				n.log.Error("cannot make the lease client", "err", err)
				continue
			}
		}
		inflight.Add(1)
		go func(c *client.Client) {
			defer inflight.Done()
			n.renew(ctx, c, start)
		}(c)
	}
}

// renew sends one renewal, sent at start, and counts it if it is answered.
func (n *Node) renew(ctx context.Context, c *client.Client, start time.Time) {
	l := &n.lease
	l.mu.Lock()
	if l.started.IsZero() {
		l.started = start
	}
	prev := l.rtt
	l.mu.Unlock()
	resp := &client.LeaseResponse{}
	var err error
	if n.leaseBlocked.Load() {
		err = errors.New("renewal blocked (test seam)")
	} else {
		rctx, cancel := context.WithTimeout(ctx, leaseTimeout)
		resp, err = c.RenewLease(rctx, client.LeaseRequest{Appliance: n.cfg.Name, PreviousRTTMillis: float64(prev.Microseconds()) / 1000})
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !start.After(l.answered) {
		// Overlapping renewals may end out of order: one sent before the
		// newest answered one changes nothing, not even the log.
		return
	}
	if err != nil {
		if !l.failing {
			n.log.Warn("lease renewal failed; retrying every second", "err", err)
		}
		l.failing = true
		return
	}
	if l.failing {
		n.log.Info("lease renewed again", "leader", resp.Leader)
	}
	l.failing = false
	// The lease counts from the newest renewal sent that was answered.
	// The round trip leaves out the leader's check that it still leads.
	rtt := time.Since(start) - time.Duration(resp.CheckMillis*float64(time.Millisecond))
	l.answered, l.rtt, l.index = start, max(rtt, time.Microsecond), resp.AppliedIndex
}

// fenceLoop fences and unfences every fenceTick.
func (n *Node) fenceLoop(ctx context.Context) {
	every(ctx, fenceTick, func() {
		if n.fenceCheck(ctx) {
			n.saveFences()
			select {
			case n.lease.changed <- struct{}{}:
			default:
			}
		}
	})
}

// fenceCheck fences this appliance's active replicated shares when its
// lease is older than fence_after, and lifts fences when it may. It
// reports whether the fenced shares changed.
func (n *Node) fenceCheck(ctx context.Context) bool {
	st := n.fsm.State()
	n.demotedCheck(ctx, st)
	n.checkSynced()
	n.saveActive(st)
	if !n.fresh && !n.isSynced() {
		// Until a restarted agent has caught up, the log's tail may name
		// more shares active here: they start fenced too.
		n.startFencesFromState(ctx)
	}
	l := &n.lease
	l.mu.Lock()
	if l.started.IsZero() {
		l.mu.Unlock()
		return false // no lease yet: this agent has never been a storage appliance
	}
	age := n.leaseAgeLocked(st, time.Now())
	answered, index, fenced := l.answered, l.index, len(l.fenced)
	l.mu.Unlock()
	if isStorage(st.Spec, n.cfg.Name) && age > time.Duration(st.Spec.Witness.FenceAfter) {
		return n.fence(ctx, st, age)
	}
	if fenced > 0 {
		return n.unfence(ctx, answered, index)
	}
	return false
}

// leaseAgeLocked is how old this appliance's lease is at now, by st: from
// the newest answered renewal it sent; before any, from its first attempt
// or when st first named it a storage appliance, whichever is later.
// Once a renewal was answered the lease counts from it alone, even when st
// named this a storage appliance later: a new leader's credit bounds when
// an answered renewal was sent, not when an appliance read the spec
// (docs/design.md, "A new leader credits the old one"). l.mu is held.
func (n *Node) leaseAgeLocked(st *store.State, now time.Time) time.Duration {
	l := &n.lease
	switch storage := isStorage(st.Spec, n.cfg.Name); {
	case storage && l.storageSince.IsZero():
		l.storageSince = now
	case !storage:
		l.storageSince = time.Time{}
	}
	if !l.answered.IsZero() {
		return now.Sub(l.answered)
	}
	return now.Sub(maxTime(l.started, l.storageSince))
}

// fence makes every replicated share this appliance is active for (in its
// own copy of the state) read-only, except those already fenced.
func (n *Node) fence(ctx context.Context, st *store.State, age time.Duration) bool {
	l := &n.lease
	changed := false
	for _, sh := range replicatedShares(st.Spec) {
		pl, _ := st.Place(sh)
		active, epoch := pl.Active.Appliance, pl.Epoch
		l.mu.Lock()
		_, done := l.fenced[sh.Name]
		logged := l.fenceFailed[sh.Name]
		l.mu.Unlock()
		if active != n.cfg.Name || done {
			continue
		}
		path, err := activePath(st.Spec, sh, active)
		if err == nil && n.cfg.Driver == nil {
			err = errors.New("this agent does not manage btrfs")
		}
		// Through the door's lock: a share being made writable right now
		// is fenced right after, not before.
		l.writeMu.Lock()
		if err == nil {
			err = n.cfg.Driver.SetReadOnly(ctx, path, true)
		}
		l.writeMu.Unlock()
		l.mu.Lock()
		if err != nil {
			l.fenceFailed[sh.Name] = true
			l.mu.Unlock()
			if !logged {
				n.log.Error("lease lapsed but the share could not be fenced; retrying", "share", sh.Name, "path", path, "err", err)
			}
			continue
		}
		l.fenced[sh.Name] = heldFence{path: path, epoch: epoch, at: time.Now()}
		delete(l.fenceFailed, sh.Name)
		l.mu.Unlock()
		changed = true
		n.log.Warn("fenced: the lease with the leader lapsed, so this appliance made the share read-only",
			"share", sh.Name, "path", path, "lease_age", roundAge(age), "fence_after", st.Spec.Witness.FenceAfter, "epoch", epoch)
	}
	return changed
}

// unfence lifts the fences that may be lifted: a renewal sent after the
// share was fenced was answered, this agent has applied the log as far as
// the leader had then, and the share's epoch did not move. A share whose
// epoch moved stays read-only and is no longer counted as fenced: it failed
// over, and the reconciler makes this copy the replica.
func (n *Node) unfence(ctx context.Context, answered time.Time, index uint64) bool {
	if n.raft.AppliedIndex() < index {
		return false // the failover that moved a share may still be on its way
	}
	l := &n.lease
	l.mu.Lock()
	fenced := maps.Clone(l.fenced)
	l.mu.Unlock()
	changed := false
	for _, share := range slices.Sorted(maps.Keys(fenced)) {
		f := fenced[share]
		if !answered.After(f.at) {
			continue
		}
		cur := n.shareEpoch(share)
		l.mu.Lock()
		delete(l.fenced, share)
		l.mu.Unlock()
		changed = true
		if cur != f.epoch {
			n.log.Warn("the share failed over while this appliance was fenced; its copy stays read-only",
				"share", share, "path", f.path, "fenced_epoch", f.epoch, "epoch", cur)
			continue
		}
		// No longer fenced, so the door may open; if it does not, or
		// btrfs fails, the fence is back and the next tick tries again.
		done, err := n.openForWrite(share)
		if err == nil {
			err = n.cfg.Driver.SetReadOnly(ctx, f.path, false)
			done()
		}
		if err != nil {
			l.mu.Lock()
			l.fenced[share] = f
			l.mu.Unlock()
			changed = false
			n.log.Warn("lease renewed but the share cannot be made writable again yet; retrying", "share", share, "path", f.path, "err", err)
			continue
		}
		n.log.Info("unfenced: the lease is renewed and the share's epoch did not move; the share is writable again", "share", share, "path", f.path, "epoch", cur)
	}
	return changed
}

// demotedCheck runs keepDemotedReadOnly once a spec is known and again
// whenever the failover state changes, until it succeeds.
func (n *Node) demotedCheck(ctx context.Context, st *store.State) {
	l := &n.lease
	if st.Spec == nil || n.cfg.Driver == nil || (l.checked && maps.Equal(st.Failover, l.demotedChecked)) {
		return // only the fence loop reads and writes these two fields
	}
	if err := n.keepDemotedReadOnly(ctx, st); err != nil {
		n.log.Warn("could not check that the copies of failed-over shares are read-only; retrying", "err", err)
		return
	}
	l.checked, l.demotedChecked = true, st.Failover
}

// keepDemotedReadOnly makes this appliance's copy of every replicated share
// that failed over to another appliance read-only, if it is writable. An
// appliance fences its active shares when its lease lapses, but one that
// stopped (a crash, a power cut) before it could comes back with its copy
// writable; so does a copy left writable by hand. The reconciler keeps a
// demoted copy as it is and counts on it being read-only.
func (n *Node) keepDemotedReadOnly(ctx context.Context, st *store.State) error {
	me := n.cfg.Name
	listed := map[string][]reconcile.Subvolume{}
	var errs []error
	for i := range st.Spec.Shares {
		sh := &st.Spec.Shares[i]
		if sh.Replication == nil || sh.State == schema.StateAbsent || !sh.Holds(me) {
			continue
		}
		pl, _ := st.Place(sh)
		if pl.Epoch == 0 || pl.Active.Appliance == me {
			continue // never failed over, or active here
		}
		path, err := activePath(st.Spec, sh, me)
		if err != nil {
			continue // the spec names no pool for this copy: there is none
		}
		pool := filepath.Dir(path)
		subs, ok := listed[pool]
		if !ok {
			if subs, err = n.cfg.Driver.Subvolumes(ctx, pool); err != nil {
				errs = append(errs, err)
				continue
			}
			listed[pool] = subs
		}
		j := slices.IndexFunc(subs, func(sv reconcile.Subvolume) bool { return sv.Path == sh.Name })
		if j < 0 || subs[j].ReadOnly {
			continue
		}
		if err := n.cfg.Driver.SetReadOnly(ctx, path, true); err != nil {
			errs = append(errs, err)
			continue
		}
		n.log.Warn("the share is active on another appliance but this copy was writable: made it read-only",
			"share", sh.Name, "path", path, "active", pl.Active.Appliance, "epoch", pl.Epoch)
	}
	return errors.Join(errs...)
}

// saveFences writes the current fences to the data dir (none: removes the
// file).
func (n *Node) saveFences() {
	l := &n.lease
	l.mu.Lock()
	saved := make(fence.Records, len(l.fenced))
	for share, f := range l.fenced {
		saved[share] = fence.Record{Path: f.path, Epoch: f.epoch}
	}
	l.mu.Unlock()
	if err := fence.WriteRecords(string(n.dir), fence.FileFenced, saved); err != nil {
		n.log.Error("cannot record the fenced shares in the data dir", "err", err)
	}
}

// activeShares are the replicated shares st says this appliance is active
// for, with their subvolumes and epochs.
func (n *Node) activeShares(st *store.State) fence.Records {
	out := fence.Records{}
	if !isStorage(st.Spec, n.cfg.Name) {
		return out
	}
	for _, sh := range replicatedShares(st.Spec) {
		pl, _ := st.Place(sh)
		active, epoch := pl.Active.Appliance, pl.Epoch
		if active != n.cfg.Name {
			continue
		}
		if path, err := activePath(st.Spec, sh, active); err == nil {
			out[sh.Name] = fence.Record{Path: path, Epoch: epoch}
		}
	}
	return out
}

// saveActive keeps FileActive equal to the shares st says this appliance
// is active for, so that whoever starts or fences this agent without the
// Raft state knows them: the fence loop calls it on every tick, and the
// door (openForWrite) before a share becomes writable.
func (n *Node) saveActive(st *store.State) {
	if st.Spec == nil {
		return // nothing known yet: keep what an earlier run recorded
	}
	l := &n.lease
	l.activeMu.Lock()
	defer l.activeMu.Unlock()
	active := n.activeShares(st)
	if l.activeSaved != nil && maps.Equal(active, l.activeSaved) {
		return
	}
	// A share this appliance was active for and is not any more is made
	// read-only before it leaves the file, whoever the spec now says holds
	// it: after a re-pair the spec may not name this appliance for the
	// share at all, and the reconciler then leaves the copy alone.
	for share, rec := range l.activeSaved {
		if _, still := active[share]; still || n.writableHere(st, share) || n.cfg.Driver == nil {
			continue
		}
		if gone, err := fence.MakeReadOnly(context.Background(), n.cfg.Driver, rec.Path); err != nil && !gone {
			n.log.Error("could not make a share this appliance is no longer active for read-only; keeping it on record and retrying", "share", share, "path", rec.Path, "err", err)
			active[share] = rec
		} else if !gone {
			n.log.Warn("this appliance is no longer active for the share: made its copy read-only", "share", share, "path", rec.Path)
		}
	}
	if err := fence.WriteRecords(string(n.dir), fence.FileActive, active); err != nil {
		n.log.Error("cannot record the shares this appliance is active for", "err", err)
		return
	}
	l.activeSaved = active
}

// startFencesFromFiles is the first thing a storage agent does: every
// share an earlier run of it was active for (FileActive) or had fenced
// (FileFenced) is made read-only, before Raft even starts, because this
// agent cannot tell yet whether the fleet failed the share over while it
// was gone. The fences count as made now, so only a renewal sent after
// this start lifts them (unfence), once the log is applied as far as the
// leader's and the epoch has not moved.
func (n *Node) startFencesFromFiles(ctx context.Context) map[string]heldFence {
	out := map[string]heldFence{}
	recs := fence.Records{}
	for _, file := range []string{fence.FileActive, fence.FileFenced} {
		r, err := fence.ReadRecords(string(n.dir), file)
		if err != nil {
			n.log.Error("cannot read what this agent was active for or fenced before it stopped; fencing what the state says", "err", err)
			continue
		}
		maps.Copy(recs, r)
	}
	now := time.Now()
	for _, share := range slices.Sorted(maps.Keys(recs)) {
		if f, ok := n.startFence(ctx, share, recs[share], now); ok {
			out[share] = f
		}
	}
	return out
}

// startFence makes one share read-only as the agent starts; ok says it is
// a fence to record (the subvolume exists and is read-only now).
func (n *Node) startFence(ctx context.Context, share string, r fence.Record, now time.Time) (heldFence, bool) {
	if n.cfg.Driver == nil {
		return heldFence{}, false
	}
	if gone, err := fence.MakeReadOnly(ctx, n.cfg.Driver, r.Path); gone {
		return heldFence{}, false
	} else if err != nil {
		n.log.Error("starting fenced: could not make the share read-only; retrying", "share", share, "path", r.Path, "err", err)
		return heldFence{}, false
	}
	n.log.Warn("starting fenced: the share stays read-only until this agent has caught up with the fleet and its lease is renewed",
		"share", share, "path", r.Path, "epoch", r.Epoch)
	return heldFence{path: r.Path, epoch: r.Epoch, at: now}, true
}

// startFencesFromState fences, as startFencesFromFiles does, the shares
// this agent's copy of the state (its last Raft snapshot) says it is
// active for and the files did not name.
func (n *Node) startFencesFromState(ctx context.Context) {
	st := n.fsm.State()
	l := &n.lease
	now := time.Now()
	changed := false
	for share, r := range n.activeShares(st) {
		l.mu.Lock()
		_, done := l.fenced[share]
		l.mu.Unlock()
		if done {
			continue
		}
		if f, ok := n.startFence(ctx, share, r, now); ok {
			l.mu.Lock()
			l.fenced[share] = f
			l.mu.Unlock()
			changed = true
		}
	}
	if changed {
		n.saveFences()
	}
}

// checkSynced closes lease.synced once a renewal was answered and the log
// is applied as far as the leader had applied it then.
func (n *Node) checkSynced() {
	l := &n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.syncedDone || l.answered.IsZero() || n.raft.AppliedIndex() < l.index {
		return
	}
	l.syncedDone = true
	close(l.synced)
	n.log.Info("caught up with the fleet", "applied_index", l.index)
}

// isSynced says whether lease.synced is closed.
func (n *Node) isSynced() bool {
	l := &n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncedDone
}

// waitSynced blocks until this agent has caught up with the fleet since
// it started (lease.synced), or ctx ends; it reports which.
func (n *Node) waitSynced(ctx context.Context, what string) bool {
	select {
	case <-n.lease.synced:
		return true
	default:
	}
	n.log.Info("waiting to catch up with the fleet before acting on this agent's copy of the state", "part", what)
	select {
	case <-n.lease.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

// beatLoop tells the guard every fence.BeatInterval which active shares
// this agent holds writable and how long its lease still holds, so that
// the guard fences them if this agent exits or falls silent.
func (n *Node) beatLoop(ctx context.Context) {
	t := time.NewTicker(fence.BeatInterval)
	defer t.Stop()
	for {
		n.cfg.Guard.Beat(n.heartbeat())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat is what the guard is told now.
func (n *Node) heartbeat() fence.Heartbeat {
	if n.stopping.Load() {
		return fence.Heartbeat{} // fenced on stop: nothing is writable
	}
	st := n.fsm.State()
	active := n.activeShares(st)
	l := &n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	for share := range l.fenced {
		delete(active, share)
	}
	if len(active) == 0 || l.started.IsZero() && l.storageSince.IsZero() {
		return fence.Heartbeat{}
	}
	age := n.leaseAgeLocked(st, time.Now())
	return fence.Heartbeat{Active: active, LeaseLeftMS: (time.Duration(st.Spec.Witness.FenceAfter) - age).Milliseconds()}
}

// FenceActive makes every replicated share this agent is active for
// read-only and records the fences, as an agent does when it stops: once
// it is gone nothing renews its lease, and the quorum will fail the shares
// over. Restarted, the agent lifts the fences under the usual rules.
func (n *Node) FenceActive(ctx context.Context) error {
	if n.cfg.Driver == nil || n.fsm == nil {
		return nil
	}
	l := &n.lease
	// Closing the door first: nothing becomes writable after this.
	l.writeMu.Lock()
	n.stopping.Store(true)
	defer l.writeMu.Unlock()
	active := n.activeShares(n.fsm.State())
	var errs []error
	now := time.Now()
	for _, share := range slices.Sorted(maps.Keys(active)) {
		r := active[share]
		if gone, err := fence.MakeReadOnly(ctx, n.cfg.Driver, r.Path); gone {
			continue
		} else if err != nil {
			errs = append(errs, fmt.Errorf("fence share %s: %w", share, err))
			continue
		}
		l.mu.Lock()
		if _, ok := l.fenced[share]; !ok {
			l.fenced[share] = heldFence{path: r.Path, epoch: r.Epoch, at: now}
		}
		l.mu.Unlock()
		n.log.Info("stopping: fenced the share (read-only until this agent is back and its lease is renewed)", "share", share, "path", r.Path)
	}
	n.saveFences()
	if n.cfg.Guard != nil {
		n.cfg.Guard.Beat(fence.Heartbeat{}) // nothing writable: the guard stands down
	}
	return errors.Join(errs...)
}

// activePath is the subvolume of sh on appliance, which is either the
// share's own appliance (its pool) or its replication target (the
// replication.to pool).
func activePath(spec *schema.Spec, sh *schema.Share, appliance string) (string, error) {
	pool := reconcile.SharePool(spec, sh, appliance)
	if pool == nil {
		return "", fmt.Errorf("share %s: the spec has no pool for it on %s", sh.Name, appliance)
	}
	return filepath.Join(pool.Path, sh.Name), nil
}

// Fenced returns the shares this appliance has fenced: it is active for
// them and made them read-only because its lease with the leader lapsed.
// The map is the caller's.
func (n *Node) Fenced() map[string]bool {
	l := &n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]bool, len(l.fenced))
	for share := range l.fenced {
		out[share] = true
	}
	return out
}

// fencedList is Fenced, sorted; nil when none.
func (n *Node) fencedList() []string {
	l := &n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fenced) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(l.fenced))
}

// reportLoop publishes this appliance's status when its fenced shares
// differ from what it last published: at once on a change, and every few
// seconds until it succeeds (a fenced appliance may not reach the leader).
func (n *Node) reportLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.lease.changed:
		case <-t.C:
		}
		n.reportFenced(ctx)
	}
}

// reportFenced publishes the last reconcile report with the current fenced
// shares, if they differ from the published ones.
func (n *Node) reportFenced(ctx context.Context) {
	n.statusMu.Lock()
	defer n.statusMu.Unlock()
	if n.lastReport == nil || slices.Equal(n.fencedList(), n.publishedFenced) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.sendStatus(ctx, *n.lastReport); err != nil {
		n.log.Debug("could not publish the fenced shares yet", "err", err)
	}
}

// writableHere says whether the spec keeps share writable on this
// appliance without the witness: a share it names here with no
// replication, or with failover: off.
func (n *Node) writableHere(st *store.State, share string) bool {
	if st.Spec == nil {
		return false
	}
	sh := st.Spec.Share(share)
	return sh != nil && sh.State != schema.StateAbsent && sh.Appliance == n.cfg.Name &&
		(sh.Replication == nil || sh.Failover == schema.FailoverOff)
}
