package agent

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file wires disaster-recovery drills (POST /v1/replication/drill,
// admins only): any agent sends the caller to the share's replica, whose
// receiver clones the newest received snapshot, runs the caller's check
// command in the clone, removes the clone and records the drill in the
// share's trail (reconcile.Receiver.Drill). The check runs as the agent's
// user, which is why only an admin credential may ask for it: an admin
// already holds the fleet, a member agent's certificate never runs
// commands on another appliance.

// replicaOf names the appliance that receives a replicated share now
// (after a failover, the spec's appliance) and its pool.
func (n *Node) replicaOf(share string) (schema.Target, error) {
	spec := n.fsm.State().Spec
	if spec == nil {
		return schema.Target{}, errors.New("no spec has been applied yet")
	}
	sh := spec.Share(share)
	switch {
	case sh == nil:
		return schema.Target{}, fmt.Errorf("the spec has no share %q", share)
	case sh.Replication == nil:
		return schema.Target{}, fmt.Errorf("share %q is not replicated (it has no replication:), so it has no replica to drill", share)
	case sh.State == schema.StateAbsent:
		return schema.Target{}, fmt.Errorf("share %q is marked state: absent; it is not replicated any more", share)
	}
	pl, _ := sh.Place(n.activation(share))
	return pl.Replica, nil
}

// handleDrill runs a drill of a share on its replica; any other agent
// redirects the caller there.
func (n *Node) handleDrill(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req client.DrillRequest
	if !readJSON(w, r, &req) {
		return
	}
	q := reconcile.DrillRequest{Check: req.Check, Start: start}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: fmt.Sprintf("timeout %q: want a duration like 10m", req.Timeout)})
			return
		}
		q.Timeout = d
	}
	if err := q.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: err.Error()})
		return
	}
	replica, err := n.replicaOf(req.Share)
	if err != nil {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: err.Error()})
		return
	}
	if replica.Appliance != n.cfg.Name {
		n.redirectTo(w, r, replica.Appliance)
		return
	}
	if n.receiver == nil {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeInternal, Message: n.cfg.Name + " does not manage btrfs"})
		return
	}
	res, err := n.receiver.Drill(r.Context(), n.fsm.State().Spec, req.Share, q)
	switch {
	case errors.Is(err, reconcile.ErrNothingReceived):
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: err.Error() + "; a drill needs a replication that succeeded (fleetctl replicate " + req.Share + " --now --follow)"})
		return
	case errors.Is(err, reconcile.ErrDrilling):
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
		return
	case errors.Is(err, reconcile.ErrRefused):
		// This agent's state changed between the redirect and now.
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
		return
	}
	n.log.Info("drill", "share", req.Share, "by", userOf(r), "result", res.Entry.Result, "rpo", res.Entry.RPO, "rto", res.Entry.RTO, "err", res.Entry.Error)
	writeJSON(w, http.StatusOK, client.DrillResponse{
		Entry: store.TrailEntry(res.Entry), Appliance: n.cfg.Name, Pool: replica.Pool,
		Clone: res.Clone, Removed: res.Removed, Output: res.Output, Truncated: res.Truncated, CheckError: res.CheckErr,
	})
}
