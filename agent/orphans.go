package agent

import (
	"net/http"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/store"
)

// storeOrphanFacts converts the reconciler's orphan facts to the store's
// (the same fields: the log's format is the store's type).
func storeOrphanFacts(in []reconcile.OrphanFacts) []store.OrphanFact {
	if in == nil {
		return nil
	}
	out := make([]store.OrphanFact, len(in))
	for i, f := range in {
		out[i] = store.OrphanFact(f)
	}
	return out
}

// orphans lists the orphaned subvolumes the storage appliances of the
// stored spec last reported, in spec order, each with its size and
// creation time when the appliance reported them, and the item that
// adopts it as a share marked state: absent (schema.Spec.AbsentShare) or
// why none can.
func orphans(st *store.State) []client.Orphan {
	out := []client.Orphan{}
	for _, a := range applianceStatuses(st) {
		facts := map[string]store.OrphanFact{}
		for _, f := range a.OrphanFacts {
			facts[f.Pool+"/"+f.Name] = f
		}
		for _, o := range a.Orphans {
			pool, name, ok := strings.Cut(o, "/")
			if !ok {
				continue
			}
			or := client.Orphan{Appliance: a.Name, Pool: pool, Name: name}
			if f, ok := facts[o]; ok {
				or.Referenced = f.Referenced
				if !f.Created.IsZero() {
					created := f.Created
					or.Created = &created
				}
			}
			if item, err := st.Spec.AbsentShare(a.Name, pool, name); err != nil {
				or.Note = "it cannot be named as a share to delete it (" + err.Error() + "): delete it by hand if it is not needed"
			} else {
				or.Adopt = item
			}
			out = append(out, or)
		}
	}
	return out
}

// handleOrphans lists the fleet's orphaned subvolumes from this agent's
// copy of the state.
func (n *Node) handleOrphans(w http.ResponseWriter, r *http.Request) {
	st := n.fsm.State()
	writeJSON(w, http.StatusOK, client.OrphansResponse{Generation: st.Generation, At: time.Now().UTC(), Orphans: orphans(st)})
}
