package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file wires fleetctl restore --in-place: the share itself becomes a
// writable snapshot of one of its copies, on the appliance active for it,
// its state from before kept read-only as a before-restore copy. The
// design (why the replica then follows incrementally) is in docs/design.md,
// "Restore in place".

// followTimeout bounds asking the replica what it holds, for the plan.
const followTimeout = 15 * time.Second

// restoreInPlace serves POST /v1/restore with InPlace, after the copy c
// was found: on the appliance active for the share, the share is set
// aside read-only and replaced by a writable snapshot of c, with the
// reconciler, the share's replication and the write door held so that
// none of them sees it half done; then the replica is asked to follow.
func (n *Node) restoreInPlace(w http.ResponseWriter, r *http.Request, spec *schema.Spec, c client.ShareCopy, q client.RestoreRequest, start time.Time) {
	st := n.fsm.State()
	sh := spec.Share(q.Share)
	if sh == nil || sh.State == schema.StateAbsent {
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("%s is not a share of the spec (any more): --in-place restores a share the spec has; --as makes a new one of the snapshot", q.Share))
		return
	}
	pl, _ := st.Place(sh)
	active := pl.Active.Appliance
	if c.Appliance != active {
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("%s is active on %s, but the copy %s is on %s: --in-place needs a copy on %s (fleetctl snapshots %s --appliance %s lists them), or restore this one elsewhere with --as or --path",
			q.Share, active, c.Path, c.Appliance, active, q.Share, active))
		return
	}
	if active != n.cfg.Name {
		n.redirectTo(w, r, active)
		return
	}
	pool := reconcile.SharePool(spec, sh, n.cfg.Name)
	switch {
	case n.cfg.Driver == nil || n.reconciler.Load() == nil:
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("%s does not manage btrfs", n.cfg.Name))
		return
	case pool == nil:
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("the spec has no pool for %s on %s", q.Share, n.cfg.Name))
		return
	case pool.Name != c.Pool:
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("the copy %s is in pool %s, the share in pool %s: a snapshot cannot cross filesystems; use --as or --path", c.Path, c.Pool, pool.Name))
		return
	}
	sharePath := filepath.Join(pool.Path, sh.Name)
	before := reconcile.BeforeRestorePath(pool.Path, sh.Name, start)
	rel, _ := filepath.Rel(pool.Path, c.Path)
	resp := client.RestoreResponse{Copy: c, DryRun: q.DryRun, Share: sharePath, Before: before}
	resp.Plan = []string{
		fmt.Sprintf("on %s: keep the current %s as the read-only snapshot %s", n.cfg.Name, sharePath, before),
		fmt.Sprintf("on %s: make %s a writable snapshot of %s (%s copy of %s)", n.cfg.Name, sharePath, c.Path, c.Kind, c.Share),
	}
	replicated := sh.Replication != nil && n.replicator != nil
	if replicated {
		ctx, cancel := context.WithTimeout(r.Context(), followTimeout)
		parent, why, err := n.replicator.Base(ctx, spec, sh.Name)
		cancel()
		target := pl.Replica.Appliance
		switch {
		case err != nil:
			resp.Follow = fmt.Sprintf("the replica on %s follows at the next run, started at once; it could not be asked now what it holds (%v): the run's trail entry says whether it was incremental", target, err)
		case parent != "":
			resp.Follow = fmt.Sprintf("the replica on %s follows at the next run, started at once: incremental from %s (%s), sending only how the snapshot differs from it", target, parent, why)
		default:
			resp.Follow = fmt.Sprintf("the replica on %s follows at the next run, started at once: IN FULL, as there is no base both hold (%s)", target, why)
		}
		resp.Plan = append(resp.Plan, resp.Follow)
	}
	if q.DryRun {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	if !client.ApprovesInPlace(q.Approve, sh.Name) {
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeApprovalRequired,
			Message: fmt.Sprintf("an in-place restore replaces the current state of %s (kept as the read-only snapshot %s): approve it with --approve=%s", sh.Name, before, client.InPlaceApproval(sh.Name))})
		return
	}

	by := userOf(r)
	e := reconcile.TrailEntry{ID: rand.Text(), Share: sh.Name, Side: reconcile.SideRestore, From: n.cfg.Name, To: n.cfg.Name, Start: start, Snapshot: rel,
		Note: fmt.Sprintf("by %s: in place from %s copy %s; the state before is %s", by, c.Kind, rel, before)}
	err := n.swapInPlace(r.Context(), sh.Name, sharePath, c.Path, before, replicated)
	e.End, e.Result = time.Now(), reconcile.ResultOK
	if err != nil {
		e.Result, e.Error = reconcile.ResultFailed, err.Error()
	}
	n.recordTrail(r.Context(), e)
	n.log.Info("restore in place", "share", sh.Name, "by", by, "from", c.Path, "before", before, "result", e.Result, "err", e.Error)
	switch {
	case errors.Is(err, errDoorClosed):
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("nothing was changed (recorded in the trail of %s): %w", sh.Name, err))
		return
	case err != nil:
		writeErr(w, http.StatusInternalServerError, client.CodeInternal, fmt.Errorf("restore failed (recorded in the trail of %s): %w", sh.Name, err))
		return
	}
	if replicated {
		if run, err := n.replicator.Trigger(sh.Name); err == nil {
			resp.Run = run
		} else {
			resp.Follow = fmt.Sprintf("the replica follows at the next scheduled run (%v)", err)
		}
	}
	te := store.TrailEntry(e)
	resp.Entry = &te
	writeJSON(w, http.StatusOK, resp)
}

// swapInPlace runs reconcile.RestoreInPlace with everything else that
// could touch the share held off: the reconciler (which would make a new
// empty share in the moment it is renamed away), the share's replication
// (which would snapshot it half done), and the write door, whose checks
// (active here, not fenced, a fresh lease) it must pass, so that a fence
// comes after the swap and makes the new share read-only too. A refusal
// of the door wraps errDoorClosed and changes nothing.
func (n *Node) swapInPlace(ctx context.Context, share, sharePath, snap, before string, replicated bool) error {
	release := n.reconciler.Load().Hold()
	defer release()
	if replicated {
		hold, err := n.replicator.Hold(ctx, share)
		if err != nil {
			return err
		}
		defer hold()
	}
	done, err := n.openForWrite(share)
	if err != nil {
		return err
	}
	defer done()
	return reconcile.RestoreInPlace(ctx, n.cfg.Driver, sharePath, snap, before)
}
