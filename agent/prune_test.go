package agent

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

func TestDecidePrune(t *testing.T) {
	spec, err := schema.Parse("fleet.yaml", []byte(`version: 1
appliances:
  - {name: nas1, address: 127.0.0.1:1, pools: [{name: tank, path: /srv/nas1}]}
  - {name: nas2, address: 127.0.0.1:2, pools: [{name: tank, path: /srv/nas2}]}
  - {name: nas3, address: 127.0.0.1:3, pools: [{name: tank, path: /srv/nas3}]}
shares:
  - name: projects
    appliance: nas1
    pool: tank
    replication: {to: nas3/tank, schedule: every 1h, retention: 24h}
  - name: media
    appliance: nas1
    pool: tank
    replication: {to: nas2/tank, schedule: every 1h, retention: 24h}
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	st := &store.State{
		Spec: spec,
		Failover: map[string]store.FailoverState{
			"projects": {Active: "nas2", Epoch: 1}, // re-paired: nas2 no longer holds it
			"media":    {Active: "nas2", Epoch: 3}, // failed over, still paired: kept
			"old":      {Active: "nas2", Epoch: 1}, // no longer in the spec
		},
		Trails: map[string][]store.TrailEntry{"old": {{ID: "x"}}, "media": {{ID: "y"}}},
		Nodes:  map[string]store.NodeStatus{"nas1": {}, "gone": {}, "member-not-in-spec": {}},
	}
	d := decidePrune(st, map[string]bool{"nas1": true, "member-not-in-spec": true}, now)
	want := pruneDecision{
		Prune: store.Prune{Shares: []string{"old"}, Nodes: []string{"gone"}, At: now, Reason: "the spec no longer names them"},
		Repair: []store.FailoverShare{{Share: "projects", From: "nas2", To: "nas1", ExpectedEpoch: 1, At: now,
			Reason: "nas2 no longer holds projects (the spec pairs nas1 with nas3/tank): active on its spec appliance nas1 again"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("decidePrune:\nwant %+v\ngot  %+v", want, d)
	}
	if d := decidePrune(&store.State{}, nil, now); !reflect.DeepEqual(d, pruneDecision{}) {
		t.Fatalf("no spec: want nothing decided, got %+v", d)
	}
}

// TestRepairedShareActiveExactlyOnce: a share failed over to its replica
// nas2, then paired by the spec with another replica: the leader makes it
// active on its spec appliance at the next epoch, and the old replica,
// active until then, makes its copy read-only, though the spec no longer
// names it for the share.
func TestRepairedShareActiveExactlyOnce(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleStorage}
	nodes, drivers := witnessFleet(t, roles...)
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", "n1", "n2", schema.FailoverAuto})
	leader := readyLeader(t, nodes)
	// n2 took over: its copy is writable, as a promotion leaves it.
	if err := drivers["n2"].CreateSubvolume(t.Context(), sharePath("n2", "projects")); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.apply(store.CmdFailover, store.FailoverShare{Share: "projects", From: "n1", To: "n2", ExpectedEpoch: 0, Reason: "test", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	n2 := nodes[1]
	waitUntil(t, "n2 records projects as active here", func() (bool, string) {
		n2.lease.activeMu.Lock()
		defer n2.lease.activeMu.Unlock()
		_, ok := n2.lease.activeSaved["projects"]
		return ok, fmt.Sprint(n2.lease.activeSaved)
	})

	// The spec pairs projects with n3 instead.
	yaml := witnessSpec(nodes, roles, fastPolicy, testShare{"projects", "n1", "n3", schema.FailoverAuto})
	if _, err := clientFor(t, leader).Apply(t.Context(), client.ApplyRequest{YAML: yaml}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "projects active on n1 again, at epoch 2", func() (bool, string) {
		fo := leader.FSM().State().Failover["projects"]
		return fo.Active == "n1" && fo.Epoch == 2, fo.Active
	})
	waitUntil(t, "n2's copy read-only", func() (bool, string) {
		ro, exists := readOnly(drivers["n2"], sharePath("n2", "projects"))
		return ro && exists, ""
	})
	log := leader.FSM().State().WitnessLog
	if e := log[len(log)-1]; e.Event != store.EventFailover || !strings.Contains(e.Detail, "n2 no longer holds projects") {
		t.Fatalf("witness log: want the re-pair failover explained last, got %+v", e)
	}
}

// TestRemoveMemberThatHoldsAShare: removing a member that answers, or one
// active for a share, changes nothing without force, and says what to do.
func TestRemoveMemberThatHoldsAShare(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleWitness}
	nodes, drivers := witnessFleet(t, roles...)
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", "n1", "n2", schema.FailoverManual})
	// n1 is stopped (it no longer answers), but the fleet still has it
	// active for projects (failover: manual: nobody moves it).
	stop(t, nodes[0])
	admin := clientFor(t, readyLeader(t, nodes[1:]))
	before := len(configOf(readyLeader(t, nodes[1:])))
	_, err := admin.RemoveMember(t.Context(), "n1", false)
	ae := wantAPIError(t, "remove n1, active for projects", err, client.CodeConflict)
	if !strings.Contains(ae.Message, "fleetctl failover projects --to n2") {
		t.Fatalf("want the refusal to say how to switch the share over, got %q", ae.Message)
	}
	if after := len(configOf(readyLeader(t, nodes[1:]))); after != before {
		t.Fatalf("a refused removal changed the configuration: %d → %d members", before, after)
	}
	res, err := admin.RemoveMember(t.Context(), "n1", true)
	if err != nil || len(res.Warnings) == 0 || !strings.Contains(strings.Join(res.Warnings, " "), "active for share projects") {
		t.Fatalf("forced removal: want it done with a warning about projects, got %+v, %v", res, err)
	}
}
