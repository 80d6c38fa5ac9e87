package agent

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// The replicated state follows the spec. After the spec stops naming a
// share or an appliance, the leader drops what the state keeps of it
// (store.Prune; the witness log keeps a line of what went). A replicated
// share whose failover state names an appliance that no longer holds a
// copy of it (the spec paired it with another replica after a failover to
// the old one) is made active on its spec appliance again, at the next
// epoch: that appliance promotes the newest snapshot it received from the
// old replica (the writes since, if any, stay on the old replica, which
// makes its copy read-only as it is no longer active for it: saveActive),
// and the new replica gets it from there. So the share is active exactly
// once, and nothing is deleted.

// pruneDecision is what decidePrune found to do.
type pruneDecision struct {
	// Prune lists the shares and appliances to forget; empty: none.
	Prune store.Prune
	// Repair are the failovers that put re-paired shares back on their
	// spec appliance.
	Repair []store.FailoverShare
}

// decidePrune is the leader's pure decision: what of st the spec no longer
// names, given the Raft members (whose reports are kept while they are
// members), at now.
func decidePrune(st *store.State, members map[string]bool, now time.Time) pruneDecision {
	var d pruneDecision
	if st.Spec == nil {
		return d
	}
	shares := map[string]bool{}
	for name := range st.Failover {
		shares[name] = true
	}
	for name := range st.Trails {
		shares[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(shares)) {
		if st.Spec.Share(name) == nil {
			d.Prune.Shares = append(d.Prune.Shares, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(st.Nodes)) {
		if st.Spec.Appliance(name) == nil && !members[name] {
			d.Prune.Nodes = append(d.Prune.Nodes, name)
		}
	}
	if len(d.Prune.Shares)+len(d.Prune.Nodes) > 0 {
		d.Prune.At, d.Prune.Reason = now.UTC(), "the spec no longer names them"
	}
	for i := range st.Spec.Shares {
		sh := &st.Spec.Shares[i]
		fo, ok := st.Failover[sh.Name]
		if sh.Replication == nil || sh.State == schema.StateAbsent || !ok || fo.Active == "" || sh.Holds(fo.Active) {
			continue
		}
		d.Repair = append(d.Repair, store.FailoverShare{
			Share: sh.Name, From: fo.Active, To: sh.Appliance, ExpectedEpoch: fo.Epoch, At: now.UTC(),
			Reason: fmt.Sprintf("%s"+reasonRepaired+"%s (the spec pairs %s with %s): active on its spec appliance %s again",
				fo.Active, sh.Name, sh.Appliance, sh.Replication.To, sh.Appliance),
		})
	}
	return d
}

// pruneState, on the ready leader, carries out decidePrune.
func (n *Node) pruneState() {
	if n.raft.State() != raft.Leader || !n.leaderReady.Load() {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	members := map[string]bool{}
	for _, s := range f.Configuration().Servers {
		members[string(s.ID)] = true
	}
	d := decidePrune(n.fsm.State(), members, time.Now())
	if len(d.Prune.Shares)+len(d.Prune.Nodes) > 0 {
		if _, err := n.apply(store.CmdPrune, d.Prune); err != nil {
			n.log.Warn("could not prune the state of what the spec no longer names", "err", err)
		} else {
			n.log.Info("pruned the state of what the spec no longer names", "shares", d.Prune.Shares, "appliances", d.Prune.Nodes)
		}
	}
	for _, fo := range d.Repair {
		if _, err := n.apply(store.CmdFailover, fo); err != nil {
			n.log.Warn("could not put a re-paired share back on its spec appliance", "share", fo.Share, "err", err)
			continue
		}
		n.log.Warn("re-paired share active on its spec appliance again", "share", fo.Share, "from", fo.From, "to", fo.To, "reason", fo.Reason)
	}
}
