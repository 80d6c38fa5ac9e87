package agent

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// handleDiverged lists what the old active of a share (?share=, required)
// wrote after its last replication snapshot: every diverged snapshot on
// the storage appliances of the stored spec (?appliance=, all when
// absent), each compared with its base on its own appliance, asking each
// agent concurrently, bounded by snapshotsTimeout. An appliance that does
// not answer is reported, not fatal. A share the spec does not name and
// no appliance holds a diverged copy of is not found.
func (n *Node) handleDiverged(w http.ResponseWriter, r *http.Request) {
	share, only := r.URL.Query().Get("share"), r.URL.Query().Get("appliance")
	if share == "" {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "name the share: ?share="})
		return
	}
	spec := n.fsm.State().Spec
	if spec == nil {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("no share %q: no spec has been applied yet", share)})
		return
	}
	storage := storageNames(spec, only)
	if only != "" && len(storage) == 0 {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("the spec has no storage appliance %q", only)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), snapshotsTimeout)
	defer cancel()
	answers := askStorage(n, storage,
		func() client.LocalDivergedResponse { return n.localDiverged(ctx, spec, share) },
		func(name, addr string) client.LocalDivergedResponse { return n.remoteDiverged(ctx, name, addr, share) },
		func(name, why string) client.LocalDivergedResponse {
			return client.LocalDivergedResponse{Appliance: name, Errors: []string{why}}
		})
	resp := client.DivergedResponse{At: time.Now().UTC(), Diverged: []client.DivergedCopy{}}
	for i, a := range answers {
		for _, d := range a.Diverged {
			d.Appliance = storage[i]
			resp.Diverged = append(resp.Diverged, d)
		}
		if len(a.Errors) > 0 {
			resp.Errors = append(resp.Errors, client.ApplianceError{Appliance: storage[i], Error: strings.Join(a.Errors, "; ")})
		}
	}
	slices.SortFunc(resp.Diverged, func(a, b client.DivergedCopy) int {
		return cmp.Or(cmp.Compare(a.Share, b.Share), cmp.Compare(a.Appliance, b.Appliance), cmp.Compare(a.Path, b.Path))
	})
	if len(resp.Diverged) == 0 && spec.Share(share) == nil {
		msg := fmt.Sprintf("no share %q: the spec has no share of that name and no storage appliance holds a diverged copy of it", share) + notAllAnswered(resp.Errors)
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: msg})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// remoteDiverged asks the agent name at addr for its own diverged copies.
func (n *Node) remoteDiverged(ctx context.Context, name, addr, share string) client.LocalDivergedResponse {
	var out client.LocalDivergedResponse
	if err := n.askMember(ctx, name, addr, "/v1/diverged/local?share="+url.QueryEscape(share), &out); err != nil {
		return client.LocalDivergedResponse{Appliance: name, Errors: []string{err.Error()}}
	}
	return out
}

// handleDivergedLocal lists this appliance's own diverged copies of a
// share (?share=, required), each compared with its base.
func (n *Node) handleDivergedLocal(w http.ResponseWriter, r *http.Request) {
	share := r.URL.Query().Get("share")
	if share == "" {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "name the share: ?share="})
		return
	}
	writeJSON(w, http.StatusOK, n.localDiverged(r.Context(), n.fsm.State().Spec, share))
}

// localDiverged lists the diverged copies of share on this appliance's
// pools in spec, through its btrfs driver; a pool it cannot read is one
// of the errors.
func (n *Node) localDiverged(ctx context.Context, spec *schema.Spec, share string) client.LocalDivergedResponse {
	resp := client.LocalDivergedResponse{Appliance: n.cfg.Name, Diverged: []client.DivergedCopy{}}
	a, err := n.ownAppliance(spec)
	if err != nil {
		resp.Errors = []string{err.Error()}
		return resp
	}
	for _, p := range a.Pools {
		ds, err := reconcile.ListDiverged(ctx, n.cfg.Driver, p, share)
		if err != nil {
			resp.Errors = append(resp.Errors, err.Error())
		}
		for _, d := range ds {
			resp.Diverged = append(resp.Diverged, client.DivergedCopy{Share: share, Appliance: n.cfg.Name, DivergedCopy: d})
		}
	}
	return resp
}
