package raftstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// This file is the appliance's side of the lease (the leader's side is
// witness.go). A storage appliance's agent renews its lease with the leader
// every LeaseInterval, through its own API, which forwards to the leader.
// It counts its lease from when it sent the newest renewal the leader
// answered (before the first answer, from its first attempt), so it always
// starts counting before the leader does. When the lease is older than the policy's
// fence_after, the agent fences itself: every replicated share it is active
// for is made read-only, before the leader's failover_after can pass. It
// lifts the fence once a renewal sent after fencing is answered, it has
// applied the log as far as the leader had, and the share's epoch has not
// moved; if it moved, the share failed over and its copy stays read-only.
// The fences are also kept in the data dir (fileFenced), so an agent
// restarted while fenced lifts them under the same rules. Apart from the
// lease, the agent keeps its copy of a share that failed over to another
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
	// fenced are the shares this appliance fenced, by share; only the fence
	// loop changes it.
	fenced map[string]fence
	// fenceFailed are the shares whose fencing failed and was logged.
	fenceFailed map[string]bool
	// changed wakes the status reporter when fenced changed.
	changed chan struct{}
	// demotedChecked is the failover state keepDemotedReadOnly last went
	// through without error; checked says it did once.
	demotedChecked map[string]FailoverState
	checked        bool
}

// fence is one share this appliance made read-only.
type fence struct {
	path  string    // the share's subvolume
	epoch uint64    // the share's epoch when it was fenced
	at    time.Time // when (for a fence loaded at start: the start)
}

// fenceFile is one fence as the data dir keeps it (fileFenced), so that an
// agent restarted while fenced still knows which shares it made read-only
// and lifts the fences under the same rules.
type fenceFile struct {
	Path  string `json:"path"`
	Epoch uint64 `json:"epoch"`
}

// startLease starts the lease client, the fence loop and the status
// reporter; they run until ctx ends and do something only while the stored
// spec names this appliance as a storage appliance.
func (n *Node) startLease(ctx context.Context) {
	l := &n.lease
	l.mu.Lock()
	l.fenced = n.loadFences()
	l.fenceFailed = map[string]bool{}
	l.changed = make(chan struct{}, 1)
	l.mu.Unlock()
	for _, loop := range []func(context.Context){n.renewLoop, n.fenceLoop, n.reportLoop} {
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			loop(ctx)
		}()
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

// renewLoop renews the lease every LeaseInterval.
func (n *Node) renewLoop(ctx context.Context) {
	var c *Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		if isStorage(n.fsm.State().Spec, n.cfg.Name) {
			if c == nil {
				var err error
				if c, err = NewClient(n.cfg.Advertise, n.creds, n.cfg.Name); err != nil {
					n.log.Error("cannot make the lease client", "err", err)
				}
			}
			if c != nil {
				n.renew(ctx, c, start)
			}
		}
		t.Reset(max(0, LeaseInterval-time.Since(start)))
	}
}

// renew sends one renewal, sent at start, and counts it if it is answered.
func (n *Node) renew(ctx context.Context, c *Client, start time.Time) {
	l := &n.lease
	l.mu.Lock()
	if l.started.IsZero() {
		l.started = start
	}
	prev := l.rtt
	l.mu.Unlock()
	var resp LeaseResponse
	var err error
	if n.leaseBlocked.Load() {
		err = errors.New("renewal blocked (test seam)")
	} else {
		body, _ := json.Marshal(LeaseRequest{Appliance: n.cfg.Name, PreviousRTTMillis: float64(prev.Microseconds()) / 1000})
		rctx, cancel := context.WithTimeout(ctx, leaseTimeout)
		err = c.once(rctx, http.MethodPost, "/v1/lease", body, &resp)
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
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
	l.answered, l.rtt, l.index = start, time.Since(start), resp.AppliedIndex
}

// fenceLoop fences and unfences every fenceTick.
func (n *Node) fenceLoop(ctx context.Context) {
	t := time.NewTicker(fenceTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.fenceCheck(ctx) {
			n.saveFences()
			select {
			case n.lease.changed <- struct{}{}:
			default:
			}
		}
	}
}

// fenceCheck fences this appliance's active replicated shares when its
// lease is older than fence_after, and lifts fences when it may. It
// reports whether the fenced shares changed.
func (n *Node) fenceCheck(ctx context.Context) bool {
	st := n.fsm.State()
	n.demotedCheck(ctx, st)
	l := &n.lease
	l.mu.Lock()
	if l.started.IsZero() {
		l.mu.Unlock()
		return false // no lease yet: this agent has never been a storage appliance
	}
	last := l.answered
	if last.Before(l.started) {
		last = l.started
	}
	answered, index, fenced := l.answered, l.index, len(l.fenced)
	l.mu.Unlock()
	age := time.Since(last)
	if isStorage(st.Spec, n.cfg.Name) && age > time.Duration(st.Spec.Witness.FenceAfter) {
		return n.fence(ctx, st, age)
	}
	if fenced > 0 {
		return n.unfence(ctx, answered, index)
	}
	return false
}

// fence makes every replicated share this appliance is active for (in its
// own copy of the state) read-only, except those already fenced.
func (n *Node) fence(ctx context.Context, st *State, age time.Duration) bool {
	l := &n.lease
	changed := false
	for _, sh := range replicatedShares(st.Spec) {
		active, _, epoch := activeReplica(st, sh)
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
		if err == nil {
			err = n.cfg.Driver.SetReadOnly(ctx, path, true)
		}
		l.mu.Lock()
		if err != nil {
			l.fenceFailed[sh.Name] = true
			l.mu.Unlock()
			if !logged {
				n.log.Error("lease lapsed but the share could not be fenced; retrying", "share", sh.Name, "path", path, "err", err)
			}
			continue
		}
		l.fenced[sh.Name] = fence{path: path, epoch: epoch, at: time.Now()}
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
		if cur := n.shareEpoch(share); cur != f.epoch {
			n.log.Warn("the share failed over while this appliance was fenced; its copy stays read-only",
				"share", share, "path", f.path, "fenced_epoch", f.epoch, "epoch", cur)
		} else if err := n.cfg.Driver.SetReadOnly(ctx, f.path, false); err != nil {
			n.log.Error("lease renewed but the share could not be made writable again; retrying", "share", share, "path", f.path, "err", err)
			continue
		} else {
			n.log.Info("unfenced: the lease is renewed and the share's epoch did not move; the share is writable again", "share", share, "path", f.path, "epoch", cur)
		}
		l.mu.Lock()
		delete(l.fenced, share)
		l.mu.Unlock()
		changed = true
	}
	return changed
}

// demotedCheck runs keepDemotedReadOnly once a spec is known and again
// whenever the failover state changes, until it succeeds.
func (n *Node) demotedCheck(ctx context.Context, st *State) {
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
func (n *Node) keepDemotedReadOnly(ctx context.Context, st *State) error {
	me := n.cfg.Name
	listed := map[string][]reconcile.Subvolume{}
	var errs []error
	for i := range st.Spec.Shares {
		sh := &st.Spec.Shares[i]
		fo, ok := st.Failover[sh.Name]
		if !ok || sh.Replication == nil || sh.State == schema.StateAbsent || fo.Active == "" || fo.Active == me ||
			(me != sh.Appliance && me != sh.Replication.To.Appliance) {
			continue
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
			"share", sh.Name, "path", path, "active", fo.Active, "epoch", fo.Epoch)
	}
	return errors.Join(errs...)
}

// loadFences reads the fences an earlier run of this agent left in the
// data dir; each counts as made now, so only a renewal answered after this
// start lifts it.
func (n *Node) loadFences() map[string]fence {
	out := map[string]fence{}
	b, err := os.ReadFile(n.dir.path(fileFenced))
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	var saved map[string]fenceFile
	if err == nil {
		err = json.Unmarshal(b, &saved)
	}
	if err != nil {
		n.log.Error("cannot read the shares this agent fenced before it stopped; they stay read-only until lifted by hand", "file", n.dir.path(fileFenced), "err", err)
		return out
	}
	now := time.Now()
	for share, f := range saved {
		out[share] = fence{path: f.Path, epoch: f.Epoch, at: now}
		n.log.Warn("this agent stopped while fenced: the share stays read-only until its lease is renewed", "share", share, "path", f.Path, "epoch", f.Epoch)
	}
	return out
}

// saveFences writes the current fences to the data dir (none: removes the
// file).
func (n *Node) saveFences() {
	l := &n.lease
	l.mu.Lock()
	saved := make(map[string]fenceFile, len(l.fenced))
	for share, f := range l.fenced {
		saved[share] = fenceFile{Path: f.path, Epoch: f.epoch}
	}
	l.mu.Unlock()
	var err error
	if len(saved) == 0 {
		if err = os.Remove(n.dir.path(fileFenced)); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	} else {
		var b []byte
		if b, err = json.MarshalIndent(saved, "", "  "); err == nil {
			err = writeFileAtomic(n.dir.path(fileFenced), append(b, '\n'), 0o600)
		}
	}
	if err != nil {
		n.log.Error("cannot record the fenced shares in the data dir", "err", err)
	}
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
