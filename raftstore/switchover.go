package raftstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/raftstore/pki"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// A planned switchover (`fleetctl failover SHARE --to APPLIANCE`) moves a
// replicated share to its replica with no data lost: the active appliance
// makes the share read-only and sends a final incremental, and only when
// that arrived does the leader commit the failover (the same epoch
// compare-and-set as an automatic one). The replica then promotes the final
// snapshot, identical to the source's last state.

// FailoverRequest asks for a planned switchover of Share to To.
type FailoverRequest struct {
	Share string `json:"share"`
	To    string `json:"to"`
}

// FailoverResponse says what the switchover did.
type FailoverResponse struct {
	Share string `json:"share"`
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"`
	// Snapshot is the final snapshot sent before the switch.
	Snapshot string `json:"snapshot"`
}

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
	var req FailoverRequest
	if !readJSON(w, r, &req) {
		return
	}
	st := n.fsm.State()
	if st.Spec == nil {
		writeError(w, http.StatusConflict, &APIError{Code: CodeConflict, Message: "no spec has been applied yet"})
		return
	}
	sh := st.Spec.Share(req.Share)
	if sh == nil || sh.Replication == nil || sh.State == schema.StateAbsent {
		writeError(w, http.StatusNotFound, &APIError{Code: CodeNotFound, Message: fmt.Sprintf("the stored spec has no replicated share %q", req.Share)})
		return
	}
	active, replica, epoch := activeReplica(st, sh)
	switch req.To {
	case active:
		writeError(w, http.StatusConflict, &APIError{Code: CodeConflict, Message: fmt.Sprintf("%s is already active on %s (epoch %d)", sh.Name, active, epoch)})
		return
	case replica:
	default:
		writeError(w, http.StatusBadRequest, &APIError{Code: CodeBadRequest, Message: fmt.Sprintf("%s can only move to its replica, %s", sh.Name, replica)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	var prep prepareResponse
	if err := n.callMember(ctx, active, "/v1/switchover/prepare", prepareRequest{Share: sh.Name, Epoch: epoch}, &prep); err != nil {
		writeError(w, http.StatusBadGateway, &APIError{Code: CodeInternal, Message: fmt.Sprintf("%s could not hand %s over, nothing was switched: %v", active, sh.Name, err)})
		return
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		writeApplyError(w, err)
		return
	}
	cmd := FailoverShare{
		Share:         sh.Name,
		From:          active,
		To:            replica,
		ExpectedEpoch: epoch,
		Reason:        fmt.Sprintf("planned switchover by %s; final snapshot %s", userOf(r), prep.Snapshot),
		At:            time.Now().UTC(),
	}
	data, err := EncodeCommand(CmdFailover, cmd)
	if err != nil {
		writeError(w, http.StatusInternalServerError, &APIError{Code: CodeInternal, Message: err.Error()})
		return
	}
	resp, err := applyResponse(n.raft.Apply(data, 10*time.Second))
	if err != nil {
		// The share stays read-only on the old active (safe); the
		// operator retries or investigates.
		writeApplyError(w, fmt.Errorf("commit the switchover: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, FailoverResponse{Share: sh.Name, From: active, To: replica, Epoch: resp.(FailoverResult).Epoch, Snapshot: prep.Snapshot})
}

// handlePrepare makes this appliance's copy of a share read-only and sends
// it to the replica a last time. On failure it makes the share writable
// again: nothing was switched.
func (n *Node) handlePrepare(w http.ResponseWriter, r *http.Request) {
	if identityOf(r).Role != pki.RoleNode {
		writeError(w, http.StatusForbidden, &APIError{Code: CodeUnauthorized, Message: "only the leader prepares a switchover"})
		return
	}
	var req prepareRequest
	if !readJSON(w, r, &req) {
		return
	}
	snap, err := n.prepareSwitchover(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusConflict, &APIError{Code: CodeConflict, Message: err.Error()})
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
	active, _, epoch := activeReplica(st, sh)
	if active != n.cfg.Name || epoch != req.Epoch {
		return "", fmt.Errorf("%s is active on %s at epoch %d, not here at epoch %d", sh.Name, active, epoch, req.Epoch)
	}
	pool := reconcile.SharePool(st.Spec, sh, n.cfg.Name)
	if pool == nil {
		return "", fmt.Errorf("no pool for %s on %s", sh.Name, n.cfg.Name)
	}
	path := filepath.Join(pool.Path, sh.Name)
	if err := n.cfg.Driver.SetReadOnly(ctx, path, true); err != nil {
		return "", fmt.Errorf("stop writes to %s: %w", sh.Name, err)
	}
	n.log.Info("switchover: share read-only; sending a final incremental", "share", sh.Name)
	// A scheduled run may be going: wait for it, then run the final one.
	var e reconcile.TrailEntry
	for deadline := time.Now().Add(5 * time.Minute); ; {
		e = n.replicator.RunOnce(ctx, st.Spec, sh.Name, nil)
		if e.Result == reconcile.ResultOK || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		// RunOnce reports a run already going only in its trail entry.
		if !strings.Contains(e.Error, reconcile.ErrRunning.Error()) {
			break
		}
		time.Sleep(time.Second)
	}
	if e.Result != reconcile.ResultOK {
		if err := n.cfg.Driver.SetReadOnly(context.WithoutCancel(ctx), path, false); err != nil {
			n.log.Error("switchover failed and the share could not be made writable again", "share", sh.Name, "err", err)
		}
		return "", fmt.Errorf("final replication of %s failed: %s", sh.Name, e.Error)
	}
	return e.Snapshot, nil
}

// callMember posts to the API of the member name (this node itself
// included) with this node's certificate.
func (n *Node) callMember(ctx context.Context, name, path string, body, out any) error {
	addr, err := n.memberAddr(name)
	if err != nil {
		return err
	}
	c, err := n.tlsClient(name, 0)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	return postJSON(ctx, c, "https://"+addr+path, body, out)
}
