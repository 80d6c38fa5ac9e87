package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file connects the store to each appliance's reconciler: the loop
// that keeps the appliance's btrfs at the stored spec and publishes its
// status, and the plan endpoints behind `fleetctl diff`.

// startReconciler runs this appliance's reconcile loop until ctx ends.
func (n *Node) startReconciler(ctx context.Context) {
	if n.cfg.Driver == nil {
		return
	}
	l := &reconcile.Loop{
		Appliance: n.cfg.Name,
		Driver:    gatedDriver{Driver: n.cfg.Driver, n: n},
		Watch: func() (*schema.Spec, uint64, <-chan struct{}) {
			st, changed := n.fsm.Watch()
			return st.Spec, st.Generation, changed
		},
		Active:   n.activations,
		Publish:  n.publishStatus,
		Interval: n.cfg.ReconcileInterval,
		Log:      n.log.With("part", "reconcile"),
		Ran:      n.metrics.reconciled,
	}
	n.reconciler.Store(l)
	n.goLoop(func() {
		// Until it has caught up, this agent's state may be older than the
		// fleet's: acting on it could recreate or promote a share that
		// failed over while the agent was away.
		if n.waitSynced(ctx, "reconcile") {
			l.Run(ctx)
		}
	})
}

// activation is where a share is active, as this agent's copy of the
// failover state says; the zero Activation means as the spec says.
func (n *Node) activation(share string) schema.Activation {
	return n.fsm.State().Failover[share].Activation()
}

// activations is every share's failover state, for the planner.
func (n *Node) activations() map[string]schema.Activation {
	st := n.fsm.State()
	out := make(map[string]schema.Activation, len(st.Failover))
	for share, fo := range st.Failover {
		out[share] = fo.Activation()
	}
	return out
}

// publishTimeout bounds publishing a report. The reconcile loop waits for
// it, so while the appliance is cut off from the leader every run would
// otherwise wait out a long timeout, and once healed the run that acts on
// a failover (demoting the copy, keeping what diverged) would start up
// to that long late. A report not published is sent again by the next
// run.
const publishTimeout = 10 * time.Second

// publishStatus stores this appliance's report in the fleet, through the
// leader, with the shares it has fenced.
func (n *Node) publishStatus(ctx context.Context, rep reconcile.Report) error {
	n.statusMu.Lock()
	defer n.statusMu.Unlock()
	n.lastReport = &rep
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return n.sendStatus(ctx, rep)
}

// sendStatus publishes rep with the shares fenced now. n.statusMu is held,
// so that the last status published is the last one built.
func (n *Node) sendStatus(ctx context.Context, rep reconcile.Report) error {
	cl, err := client.NewClient(n.cfg.Advertise, n.credentials(), n.cfg.Name)
	if err != nil {
		return err
	}
	defer cl.Close()
	fenced := n.fencedList()
	err = cl.SetNodeStatus(ctx, n.cfg.Name, store.NodeStatus{
		ObservedGeneration: rep.Generation,
		ReportedAt:         time.Now().UTC(),
		Errors:             rep.Errors,
		Converged:          rep.Converged,
		Shares:             storeShareFacts(rep.Shares),
		Orphans:            rep.Orphans,
		OrphanFacts:        storeOrphanFacts(rep.OrphanFacts),
		Fenced:             fenced,
	})
	if err == nil {
		n.publishedFenced = fenced
	}
	return err
}

func (n *Node) handleSetNodeStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !requireSelf(w, r, name, "reports its own status") {
		return
	}
	var st store.NodeStatus
	if !readJSON(w, r, &st) {
		return
	}
	if _, err := n.apply(store.CmdSetNodeStatus, store.SetNodeStatus{Node: name, Status: st}); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// handlePlan asks every storage appliance of a spec for its plan.
func (n *Node) handlePlan(w http.ResponseWriter, r *http.Request) {
	var req client.PlanRequest
	if !readJSON(w, r, &req) {
		return
	}
	spec, ok := parseForAPI(w, req.YAML)
	if !ok {
		return
	}
	members := map[string]raft.ServerAddress{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			members[string(s.ID)] = s.Address
		}
	}
	var storage []schema.Appliance
	for _, a := range spec.Appliances {
		if a.Role != schema.RoleWitness {
			storage = append(storage, a)
		}
	}
	// Sized once: the goroutines below write into its elements.
	resp := client.PlanResponse{Appliances: make([]client.AppliancePlan, len(storage))}
	var wg sync.WaitGroup
	for i, a := range storage {
		p := &resp.Appliances[i]
		p.Appliance = a.Name
		addr, member := members[a.Name]
		switch {
		case a.Name == n.cfg.Name:
			*p = n.localPlan(r.Context(), spec)
		case !member:
			p.Error = fmt.Sprintf("no agent named %q has joined the fleet", a.Name)
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				*p = n.remotePlan(r.Context(), a.Name, string(addr), req.YAML)
			}()
		}
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, resp)
}

func (n *Node) remotePlan(ctx context.Context, name, addr, yaml string) client.AppliancePlan {
	hc, err := n.peerClient(name, addr, peerQuick)
	if err != nil {
		return client.AppliancePlan{Appliance: name, Error: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var p client.AppliancePlan
	if err := client.PostJSON(ctx, hc, "https://"+addr+"/v1/plan/local", client.PlanRequest{YAML: yaml}, &p); err != nil {
		return client.AppliancePlan{Appliance: name, Error: fmt.Sprintf("agent unreachable: %v", err)}
	}
	return p
}

// handlePlanLocal answers with this appliance's own plan.
func (n *Node) handlePlanLocal(w http.ResponseWriter, r *http.Request) {
	var req client.PlanRequest
	if !readJSON(w, r, &req) {
		return
	}
	spec, ok := parseForAPI(w, req.YAML)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, n.localPlan(r.Context(), spec))
}

// localPlan is the plan this appliance's reconciler would run for spec now.
func (n *Node) localPlan(ctx context.Context, spec *schema.Spec) client.AppliancePlan {
	p := client.AppliancePlan{Appliance: n.cfg.Name}
	if n.cfg.Driver == nil {
		p.Error = "this agent does not manage btrfs"
		return p
	}
	obs := reconcile.Observe(ctx, n.cfg.Driver, spec, n.cfg.Name)
	p.Actions = reconcile.Plan(reconcile.PlanInput{Spec: spec, Appliance: n.cfg.Name, Observed: obs, Now: time.Now(), Active: n.activations()})
	if p.Actions == nil {
		p.Actions = []reconcile.Action{}
	}
	return p
}

// parseForAPI parses a spec sent to the API, answering 422 with every
// problem when it is invalid.
func parseForAPI(w http.ResponseWriter, yaml string) (*schema.Spec, bool) {
	spec, err := schema.Parse("fleet.yaml", []byte(yaml))
	if err != nil {
		writeApplyError(w, fmt.Errorf("%w: %w", store.ErrInvalidSpec, err))
		return nil, false
	}
	return spec, true
}

// storeShareFacts converts the reconciler's share facts to the store's
// type, which is what the log persists.
func storeShareFacts(in []reconcile.ShareFacts) []store.ShareFacts {
	if in == nil {
		return nil
	}
	out := make([]store.ShareFacts, len(in))
	for i, f := range in {
		out[i] = store.ShareFacts(f)
	}
	return out
}
