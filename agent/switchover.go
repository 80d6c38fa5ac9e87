package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// A planned switchover (`fleetctl failover SHARE --to APPLIANCE`) moves a
// replicated share to its replica with no data lost: the active appliance
// makes the share read-only and sends a final incremental, and only when
// that arrived does the leader commit the failover (the same epoch
// compare-and-set as an automatic one). The replica then promotes the final
// snapshot, identical to the source's last state.

// prepareRequest asks the active appliance to stop writes to a share and
// send it a last time, if the share is still at Epoch.
type prepareRequest struct {
	Share string `json:"share"`
	Epoch uint64 `json:"epoch"`
}

type prepareResponse struct {
	Snapshot string `json:"snapshot"`
}

// handleFailover runs a planned switchover; it runs on the leader.
func (n *Node) handleFailover(w http.ResponseWriter, r *http.Request) {
	var req client.FailoverRequest
	if !readJSON(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	res, err := n.switchover(ctx, req.Share, req.To, reasonSwitchover+userOf(r))
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) {
			writeError(w, ae.Status, ae)
			return
		}
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// switchover moves share to its replica to with no data lost: the active
// appliance stops writes and sends a final incremental, then the leader
// commits the failover (an epoch compare-and-set). why starts the reason
// recorded in the witness log. It runs on the leader.
func (n *Node) switchover(ctx context.Context, share, to, why string) (*client.FailoverResponse, error) {
	st := n.fsm.State()
	if st.Spec == nil {
		return nil, &client.APIError{Status: http.StatusConflict, Code: client.CodeConflict, Message: "no spec has been applied yet"}
	}
	sh := st.Spec.Share(share)
	if sh == nil || sh.Replication == nil || sh.State == schema.StateAbsent {
		return nil, &client.APIError{Status: http.StatusNotFound, Code: client.CodeNotFound, Message: fmt.Sprintf("the stored spec has no replicated share %q", share)}
	}
	pl, _ := st.Place(sh)
	active, replica, epoch := pl.Active.Appliance, pl.Replica.Appliance, pl.Epoch
	switch to {
	case active:
		return nil, &client.APIError{Status: http.StatusConflict, Code: client.CodeConflict, Message: fmt.Sprintf("%s is already active on %s (epoch %d)", sh.Name, active, epoch)}
	case replica:
	default:
		return nil, &client.APIError{Status: http.StatusBadRequest, Code: client.CodeBadRequest, Message: fmt.Sprintf("%s can only move to its replica, %s", sh.Name, replica)}
	}
	var prep prepareResponse
	if err := n.callMember(ctx, active, "/v1/switchover/prepare", prepareRequest{Share: sh.Name, Epoch: epoch}, &prep); err != nil {
		return nil, &client.APIError{Status: http.StatusBadGateway, Code: client.CodeInternal, Message: fmt.Sprintf("%s could not hand %s over, nothing was switched: %v", active, sh.Name, err)}
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return nil, err
	}
	cmd := store.FailoverShare{
		Share:         sh.Name,
		From:          active,
		To:            replica,
		ExpectedEpoch: epoch,
		Reason:        fmt.Sprintf("%s; final snapshot %s", why, prep.Snapshot),
		At:            time.Now().UTC(),
	}
	resp, err := n.apply(store.CmdFailover, cmd)
	if err != nil {
		// The share stays read-only on the old active (safe); the
		// operator retries or investigates.
		return nil, fmt.Errorf("commit the switchover: %w", err)
	}
	return &client.FailoverResponse{Share: sh.Name, From: active, To: replica, Epoch: resp.(store.FailoverResult).Epoch, Snapshot: prep.Snapshot}, nil
}

// failbackInterval is how often the leader looks for shares to return home
// under failback: auto.
const failbackInterval = 2 * time.Second

// failbackLoop, on the leader, returns each share with failover: auto to
// its spec appliance under the witness policy's failback: auto, once that
// appliance has caught up: a replication from the share's active appliance
// to it succeeded after the failover. The return is a planned switchover,
// so nothing written on the active appliance is lost.
func (n *Node) failbackLoop(ctx context.Context) {
	every(ctx, failbackInterval, func() { n.failbackCheck(ctx) })
}

// failbackCheck switches back every share that may fail back now.
func (n *Node) failbackCheck(ctx context.Context) {
	if n.raft.State() != raft.Leader || !n.leaderReady.Load() {
		return
	}
	st := n.fsm.State()
	if st.Spec == nil || st.Spec.Witness.Failback != schema.FailbackAuto {
		return
	}
	for i := range st.Spec.Shares {
		sh := &st.Spec.Shares[i]
		if sh.Replication == nil || sh.Failover != schema.FailoverAuto || sh.State == schema.StateAbsent {
			continue
		}
		fo := st.Failover[sh.Name]
		pl, _ := st.Place(sh)
		active := pl.Active.Appliance
		if active == sh.Appliance || !caughtUp(st.Trails[sh.Name], active, sh.Appliance, fo.ChangedAt) {
			continue
		}
		n.log.Info("failback: the share's appliance has caught up; switching back", "share", sh.Name, "to", sh.Appliance)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		res, err := n.switchover(sctx, sh.Name, sh.Appliance, fmt.Sprintf(reasonFailback+"%s caught up", sh.Appliance))
		cancel()
		if err != nil {
			n.log.Warn("failback did not happen; will retry", "share", sh.Name, "err", err)
			continue
		}
		n.log.Info("failed back", "share", res.Share, "to", res.To, "epoch", res.Epoch)
	}
}

// caughtUp reports whether the trail shows a successful replication from
// active to home that started after the failover at since.
func caughtUp(trail []store.TrailEntry, active, home string, since time.Time) bool {
	for i := len(trail) - 1; i >= 0; i-- {
		e := trail[i]
		if e.Side == reconcile.SideSend && e.From == active && e.To == home && e.Result == reconcile.ResultOK && e.Start.After(since) {
			return true
		}
	}
	return false
}

// handlePrepare makes this appliance's copy of a share read-only and sends
// it to the replica a last time. On failure it makes the share writable
// again: nothing was switched.
func (n *Node) handlePrepare(w http.ResponseWriter, r *http.Request) {
	var req prepareRequest
	if !readJSON(w, r, &req) {
		return
	}
	snap, err := n.prepareSwitchover(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, prepareResponse{Snapshot: snap})
}

func (n *Node) prepareSwitchover(ctx context.Context, req prepareRequest) (string, error) {
	st := n.fsm.State()
	if st.Spec == nil || n.replicator == nil {
		return "", errors.New(n.cfg.Name + " has no spec or does not manage btrfs")
	}
	sh := st.Spec.Share(req.Share)
	if sh == nil || sh.Replication == nil {
		return "", fmt.Errorf("no replicated share %q", req.Share)
	}
	pl, _ := st.Place(sh)
	active, epoch := pl.Active.Appliance, pl.Epoch
	if active != n.cfg.Name || epoch != req.Epoch {
		return "", fmt.Errorf("%s is active on %s at epoch %d, not here at epoch %d", sh.Name, active, epoch, req.Epoch)
	}
	path, err := activePath(st.Spec, sh, n.cfg.Name)
	if err != nil {
		return "", err
	}
	if err := n.cfg.Driver.SetReadOnly(ctx, path, true); err != nil {
		return "", fmt.Errorf("stop writes to %s: %w", sh.Name, err)
	}
	n.log.Info("switchover: share read-only; sending a final incremental", "share", sh.Name)
	// A scheduled run may be going, snapshotted before the share turned
	// read-only: wait for it to end (woken when it does, not polled), then
	// make the final run, which nothing scheduled can overtake.
	e := n.replicator.RunNext(ctx, st.Spec, sh.Name, nil)
	if e.Result != reconcile.ResultOK {
		n.rollbackPrepare(context.WithoutCancel(ctx), sh.Name, path, epoch)
		return "", fmt.Errorf("final replication of %s failed: %s", sh.Name, e.Error)
	}
	return e.Snapshot, nil
}

// callMember posts to the API of the member name (this node itself
// included) with this node's certificate.
func (n *Node) callMember(ctx context.Context, name, path string, body, out any) error {
	// The answer comes when the work is done (a final send): ctx bounds it.
	c, addr, err := n.memberClient(name, peerLong)
	if err != nil {
		return err
	}
	return client.PostJSON(ctx, c, "https://"+addr+path, body, out)
}

// rollbackPrepare makes the share writable again after a switchover that
// did not happen, through the same door as lifting a fence: the final
// send may have taken long enough for this appliance's lease to lapse and
// the share to fail over. If the door is closed, the share stays
// read-only as a fence, lifted under the fence rules.
func (n *Node) rollbackPrepare(ctx context.Context, share, path string, epoch uint64) {
	done, err := n.openForWrite(share)
	if err == nil {
		err = n.cfg.Driver.SetReadOnly(ctx, path, false)
		done()
		if err == nil {
			return
		}
	}
	n.log.Warn("switchover failed; the share stays read-only, fenced, until this agent may make it writable", "share", share, "err", err)
	l := &n.lease
	l.mu.Lock()
	if _, ok := l.fenced[share]; !ok {
		l.fenced[share] = heldFence{path: path, epoch: epoch, at: time.Now()}
	}
	l.mu.Unlock()
	n.saveFences()
}
