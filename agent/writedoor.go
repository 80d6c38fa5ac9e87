package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file is the one door through which an agent makes a copy of a
// replicated share writable: lifting a fence (lease.go), rolling back a
// switchover's prepare (switchover.go), and the reconciler creating or
// promoting the share (gatedDriver). Everything that makes a copy
// read-only is free to run at any time; only this direction is guarded.

// errDoorClosed is wrapped by every refusal of openForWrite.
var errDoorClosed = errors.New("this agent may not make the share writable now")

// openForWrite lets the caller make this appliance's copy of the
// replicated share writable, and holds the door (lease.writeMu) until the
// caller calls done, so that fencing on stop cannot slip in between. It
// refuses unless the agent is not stopping; the state says this appliance
// is active for the share; the share is not fenced; a renewal sent within
// fence_after was answered, and the log is applied as far as the leader's
// index in that answer (so a failover already committed is
// seen); and the guard has been told, in its pipe, that the share is
// writable (so it fences it if the agent dies a moment later).
func (n *Node) openForWrite(share string) (done func(), err error) {
	l := &n.lease
	l.writeMu.Lock()
	defer func() {
		if err != nil {
			l.writeMu.Unlock()
		}
	}()
	if n.stopping.Load() {
		return nil, fmt.Errorf("share %s: %w: it is stopping", share, errDoorClosed)
	}
	st := n.fsm.State()
	sh := watchedShare(st, share)
	if sh == nil {
		// Not replicated with failover: no other copy can become
		// writable, so there is nothing to guard.
		return l.writeMu.Unlock, nil
	}
	if pl, _ := st.Place(sh); pl.Active.Appliance != n.cfg.Name {
		return nil, fmt.Errorf("share %s: %w: it is active on %s (epoch %d)", share, errDoorClosed, pl.Active.Appliance, pl.Epoch)
	}
	l.mu.Lock()
	_, fenced := l.fenced[share]
	answered, index := l.answered, l.index
	l.mu.Unlock()
	if fenced {
		return nil, fmt.Errorf("share %s: %w: it is fenced", share, errDoorClosed)
	}
	switch {
	case answered.IsZero():
		return nil, fmt.Errorf("share %s: %w: no lease renewal has been answered yet", share, errDoorClosed)
	case time.Since(answered) > time.Duration(st.Spec.Witness.FenceAfter):
		return nil, fmt.Errorf("share %s: %w: its lease is older than fence_after %s", share, errDoorClosed, st.Spec.Witness.FenceAfter)
	case n.raft.AppliedIndex() < index:
		return nil, fmt.Errorf("share %s: %w: the log is not applied as far as the leader's yet", share, errDoorClosed)
	}
	// Recorded and announced before, never after: an agent that dies a
	// moment later, whole machine included, fences the share at start.
	n.saveActive(st)
	if n.cfg.Guard != nil {
		if err := n.cfg.Guard.Announce(n.heartbeat()); err != nil {
			return nil, fmt.Errorf("share %s: %w: the guard could not be told: %w", share, errDoorClosed, err)
		}
	}
	return l.writeMu.Unlock, nil
}

// maxTime returns the later of two times.
func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// gatedDriver is the btrfs driver the reconciler gets: whatever would make
// a copy of a replicated share on this appliance writable (creating it,
// promoting a received snapshot to it, clearing its read-only flag) goes
// through openForWrite first. Everything else passes straight through.
type gatedDriver struct {
	reconcile.Driver
	n *Node
}

// gate runs op through the door when path is this appliance's copy of a
// replicated share.
func (g gatedDriver) gate(path string, op func() error) error {
	share := g.n.replicatedShareAt(path)
	if share == "" {
		return op()
	}
	done, err := g.n.openForWrite(share)
	if err != nil {
		return err
	}
	defer done()
	return op()
}

// CreateSubvolume creates path, through the door for a replicated share.
func (g gatedDriver) CreateSubvolume(ctx context.Context, path string) error {
	return g.gate(path, func() error { return g.Driver.CreateSubvolume(ctx, path) })
}

// Snapshot snapshots src to dst; a writable snapshot at a replicated
// share's path (a promotion) goes through the door.
func (g gatedDriver) Snapshot(ctx context.Context, src, dst string, readOnly bool) error {
	if readOnly {
		return g.Driver.Snapshot(ctx, src, dst, true)
	}
	return g.gate(dst, func() error { return g.Driver.Snapshot(ctx, src, dst, false) })
}

// SetReadOnly sets the flag; clearing it on a replicated share goes
// through the door.
func (g gatedDriver) SetReadOnly(ctx context.Context, path string, readOnly bool) error {
	if readOnly {
		return g.Driver.SetReadOnly(ctx, path, true)
	}
	return g.gate(path, func() error { return g.Driver.SetReadOnly(ctx, path, false) })
}

// Rename renames; a rename onto a replicated share's path goes through
// the door.
func (g gatedDriver) Rename(ctx context.Context, from, to string) error {
	return g.gate(to, func() error { return g.Driver.Rename(ctx, from, to) })
}

// replicatedShareAt names the replicated share whose copy on this
// appliance is at path, or "".
func (n *Node) replicatedShareAt(path string) string {
	st := n.fsm.State()
	if st.Spec == nil {
		return ""
	}
	for _, sh := range replicatedShares(st.Spec) {
		if n.cfg.Name != sh.Appliance && n.cfg.Name != sh.Replication.To.Appliance {
			continue
		}
		if p, err := activePath(st.Spec, sh, n.cfg.Name); err == nil && p == path {
			return sh.Name
		}
	}
	return ""
}

// watchedShare is the share of st's spec that can fail over (replicated,
// present, failover auto or manual), or nil.
func watchedShare(st *store.State, name string) *schema.Share {
	if st.Spec == nil {
		return nil
	}
	for _, sh := range replicatedShares(st.Spec) {
		if sh.Name == name {
			return sh
		}
	}
	return nil
}
