package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// snapshotsTimeout bounds how long the fleet-wide listing waits for each
// storage appliance; one that has not answered by then is reported.
const snapshotsTimeout = 10 * time.Second

// handleSnapshots lists every copy of a share (?share=, all when absent)
// on the storage appliances of the stored spec (?appliance=, all when
// absent), asking each appliance's agent concurrently. An appliance that
// does not answer in snapshotsTimeout is reported, not fatal. A share the
// spec does not name and no appliance holds a copy of is not found.
func (n *Node) handleSnapshots(w http.ResponseWriter, r *http.Request) {
	share, only := r.URL.Query().Get("share"), r.URL.Query().Get("appliance")
	spec := n.fsm.State().Spec
	if spec == nil {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: "no copies of shares: no spec has been applied yet"})
		return
	}
	storage := storageNames(spec, only)
	if only != "" && len(storage) == 0 {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("the spec has no storage appliance %q", only)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), snapshotsTimeout)
	defer cancel()
	resp := n.gatherCopies(ctx, spec, storage, share)
	if share != "" && len(resp.Copies) == 0 && spec.Share(share) == nil {
		msg := fmt.Sprintf("no share %q: the spec has no share of that name and no storage appliance holds a copy of it", share) + notAllAnswered(resp.Errors)
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: msg})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// gatherCopies asks the storage appliances named for their copies of
// share (every share's when ""), concurrently, and sorts what they hold.
func (n *Node) gatherCopies(ctx context.Context, spec *schema.Spec, storage []string, share string) client.SnapshotsResponse {
	answers := askStorage(n, storage,
		func() client.LocalSnapshotsResponse { return n.localCopies(ctx, spec, share) },
		func(name, addr string) client.LocalSnapshotsResponse { return n.remoteCopies(ctx, name, addr, share) },
		func(name, why string) client.LocalSnapshotsResponse {
			return client.LocalSnapshotsResponse{Appliance: name, Errors: []string{why}}
		})
	resp := client.SnapshotsResponse{At: time.Now().UTC(), Copies: []client.ShareCopy{}}
	for i, a := range answers {
		for _, c := range a.Copies {
			c.Appliance = storage[i]
			resp.Copies = append(resp.Copies, c)
		}
		if len(a.Errors) > 0 {
			resp.Errors = append(resp.Errors, client.ApplianceError{Appliance: storage[i], Error: strings.Join(a.Errors, "; ")})
		}
	}
	SortCopies(resp.Copies)
	return resp
}

// SortCopies sorts copies by share, time (unknown first), appliance,
// pool and path.
func SortCopies(copies []client.ShareCopy) {
	slices.SortFunc(copies, func(a, b client.ShareCopy) int {
		var ta, tb time.Time
		if a.Time != nil {
			ta = *a.Time
		}
		if b.Time != nil {
			tb = *b.Time
		}
		return cmp.Or(cmp.Compare(a.Share, b.Share), ta.Compare(tb),
			cmp.Compare(a.Appliance, b.Appliance), cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Path, b.Path))
	})
}

// remoteCopies asks the agent name at addr for its own copies.
func (n *Node) remoteCopies(ctx context.Context, name, addr, share string) client.LocalSnapshotsResponse {
	path := "/v1/snapshots/local"
	if share != "" {
		path += "?share=" + url.QueryEscape(share)
	}
	var out client.LocalSnapshotsResponse
	if err := n.askMember(ctx, name, addr, path, &out); err != nil {
		return client.LocalSnapshotsResponse{Appliance: name, Errors: []string{err.Error()}}
	}
	return out
}

// handleSnapshotsLocal lists this appliance's own copies of a share
// (?share=, all when absent) on its pools in the stored spec.
func (n *Node) handleSnapshotsLocal(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.localCopies(r.Context(), n.fsm.State().Spec, r.URL.Query().Get("share")))
}

// localCopies lists the copies on this appliance's pools in spec,
// through its btrfs driver; a pool it cannot read is one of the errors.
func (n *Node) localCopies(ctx context.Context, spec *schema.Spec, share string) client.LocalSnapshotsResponse {
	resp := client.LocalSnapshotsResponse{Appliance: n.cfg.Name, Copies: []client.ShareCopy{}}
	a, err := n.ownAppliance(spec)
	if err != nil {
		resp.Errors = []string{err.Error()}
		return resp
	}
	for _, p := range a.Pools {
		copies, err := reconcile.ListCopies(ctx, n.cfg.Driver, p, share)
		if err != nil {
			resp.Errors = append(resp.Errors, err.Error())
		}
		for _, c := range copies {
			// A share of the spec whose name looks like a set-aside copy
			// is a share, not a copy.
			if c.Kind == reconcile.CopyBeforeEpoch && spec.Share(filepath.Base(c.Path)) != nil {
				continue
			}
			resp.Copies = append(resp.Copies, shareCopy(n.cfg.Name, c))
		}
	}
	return resp
}

// shareCopy is the API's form of a copy on appliance.
func shareCopy(appliance string, c reconcile.Copy) client.ShareCopy {
	out := client.ShareCopy{
		Share: c.Share, Kind: c.Kind, Appliance: appliance, Pool: c.Pool, Path: c.Path,
		Epoch: c.Epoch, ReadOnly: c.ReadOnly, Referenced: c.Referenced, Exclusive: c.Exclusive,
	}
	if !c.Time.IsZero() {
		t := c.Time.UTC()
		out.Time = &t
	}
	return out
}

// storageNames are the storage appliances of spec, in its order: only
// the one named only, when it is not "".
func storageNames(spec *schema.Spec, only string) []string {
	var out []string
	for _, a := range spec.Appliances {
		if a.Role != schema.RoleWitness && (only == "" || a.Name == only) {
			out = append(out, a.Name)
		}
	}
	return out
}

// ownAppliance is this agent's appliance in spec, for a listing of its
// own pools; an error says why it has none to list.
func (n *Node) ownAppliance(spec *schema.Spec) (*schema.Appliance, error) {
	var a *schema.Appliance
	if spec != nil {
		a = spec.Appliance(n.cfg.Name)
	}
	switch {
	case n.cfg.Driver == nil:
		return nil, errors.New("this agent does not manage btrfs")
	case a == nil:
		return nil, errors.New("this agent's copy of the spec does not name it")
	}
	return a, nil
}

// askMember GETs path (with its query) from the agent name at addr into
// out, over the pooled client for quick requests; an error says the
// agent was unreachable.
func (n *Node) askMember(ctx context.Context, name, addr, path string, out any) error {
	hc, err := n.peerClient(name, addr, peerQuick)
	if err == nil {
		err = client.GetJSON(ctx, hc, "https://"+addr+path, out)
	}
	if err != nil {
		return fmt.Errorf("agent unreachable: %v", err)
	}
	return nil
}

// notAllAnswered is what a "not found" of a fleet-wide listing adds when
// some appliances did not answer ("" when all did).
func notAllAnswered(errs []client.ApplianceError) string {
	if len(errs) == 0 {
		return ""
	}
	var not []string
	for _, e := range errs {
		not = append(not, e.Appliance+": "+e.Error)
	}
	return " (not all could answer: " + strings.Join(not, "; ") + ")"
}

// askStorage asks each of the storage appliances named, concurrently, and
// returns their answers in the same order: this agent answers itself with
// local, a member with remote; for a name that is not in the Raft
// configuration, failed says so without asking anyone.
func askStorage[T any](n *Node, storage []string, local func() T, remote func(name, addr string) T, failed func(name, why string) T) []T {
	members := map[string]raft.ServerAddress{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			members[string(s.ID)] = s.Address
		}
	}
	// Sized once: the goroutines below write into its elements.
	answers := make([]T, len(storage))
	var wg sync.WaitGroup
	for i, name := range storage {
		a := &answers[i]
		addr, member := members[name]
		switch {
		case name == n.cfg.Name:
			wg.Go(func() { *a = local() })
		case !member:
			*a = failed(name, fmt.Sprintf("no agent named %q has joined the fleet", name))
		default:
			wg.Go(func() { *a = remote(name, string(addr)) })
		}
	}
	wg.Wait()
	return answers
}
