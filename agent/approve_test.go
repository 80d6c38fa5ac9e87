package agent

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

const approveSpec = `version: 1
witness: {failover_after: 60s, fence_after: 40s}
appliances:
  - name: nas1
    address: 127.0.0.1:7401
    pools: [{name: tank, path: /mnt/tank}]
  - name: nas2
    address: 127.0.0.1:7402
    pools: [{name: tank, path: /mnt/tank}]
shares:
  - {name: docs, appliance: nas1, pool: tank, quota: 10GiB}
  - {name: media, appliance: nas2, pool: tank}
`

// wantRefused checks that an apply was refused for approval with exactly
// the hazards keys, and that no member's spec generation moved from gen.
func wantRefused(t *testing.T, what string, nodes []*Node, gen uint64, err error, keys ...string) *client.APIError {
	t.Helper()
	ae := wantAPIError(t, what, err, client.CodeApprovalRequired)
	var got []string
	for _, h := range ae.Hazards {
		got = append(got, h.Key())
	}
	if !slices.Equal(got, keys) {
		t.Fatalf("%s: want hazards %q, got %q (%s)", what, keys, got, ae.Message)
	}
	if ae.Status != 409 || ae.Generation != gen || !strings.Contains(ae.Message, "nothing was changed") {
		t.Fatalf("%s: want a 409 found against generation %d saying nothing was changed, got %d, generation %d: %s", what, gen, ae.Status, ae.Generation, ae.Message)
	}
	for _, n := range nodes {
		if s := n.FSM().State(); s.Generation != gen {
			t.Fatalf("%s: %s is at generation %d after the refusal, want %d", what, n.Name(), s.Generation, gen)
		}
	}
	return ae
}

// TestApplyRefusesUnapprovedHazards: the leader refuses a destructive
// apply that does not approve what it destroys, whoever sends it and
// through whichever member, and stores it once approved.
func TestApplyRefusesUnapprovedHazards(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	leader := readyLeader(t, nodes)
	c := clientFor(t, notLeader(nodes, leader))
	ctx := t.Context()

	if _, err := c.Apply(ctx, client.ApplyRequest{YAML: approveSpec}); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	waitSpec(t, nodes, 1, approveSpec)

	absent := strings.Replace(approveSpec, "quota: 10GiB}", "quota: 10GiB, state: absent}", 1)
	_, err := c.Apply(ctx, client.ApplyRequest{YAML: absent})
	wantRefused(t, "state: absent without approval", nodes, 1, err, "delete:docs")
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: absent, Approval: schema.Approval{Approve: []string{"delete:media"}}})
	wantRefused(t, "state: absent approving another share", nodes, 1, err, "delete:docs")
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: absent, Approval: schema.Approval{Approve: []string{"delete"}}})
	wantAPIError(t, "a malformed approval", err, client.CodeBadRequest)

	moved := strings.Replace(approveSpec, "{name: media, appliance: nas2", "{name: media, appliance: nas1", 1)
	dropped := strings.Replace(approveSpec, "  - name: nas2\n    address: 127.0.0.1:7402\n    pools: [{name: tank, path: /mnt/tank}]\n", "", 1)
	dropped = strings.Replace(dropped, "  - {name: media, appliance: nas2, pool: tank}\n", "", 1)
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: moved})
	wantRefused(t, "a share moved", nodes, 1, err, "move:media")
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: dropped})
	wantRefused(t, "an appliance holding a share dropped", nodes, 1, err, "remove:nas2")

	// The appliances report what their shares hold; a quota below it is a
	// hazard, one above it is not.
	if _, err := leader.apply(store.CmdSetNodeStatus, store.SetNodeStatus{Node: "nas1", Status: store.NodeStatus{
		ObservedGeneration: 1, Shares: []store.ShareFacts{{Name: "docs", Pool: "tank", Exists: true, Referenced: 3 << 30, Quota: 10 << 30}},
	}}); err != nil {
		t.Fatalf("report docs' usage: %v", err)
	}
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: strings.Replace(approveSpec, "quota: 10GiB", "quota: 2GiB", 1)})
	wantRefused(t, "a quota below use", nodes, 1, err, "quota:docs")

	// nas1 and nas2 have no agent: they never renew. Once silent 3s, a
	// fence_after lowered to 3s would fence them at once.
	waitUntil(t, "nas1 and nas2 silent for 3s on the leader", func() (bool, string) {
		f := leader.applyFacts(leader.FSM().State())
		return f.Silent["nas1"] >= 3*time.Second && f.Silent["nas2"] >= 3*time.Second, ""
	})
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: strings.Replace(approveSpec, "fence_after: 40s", "fence_after: 3s", 1)})
	wantRefused(t, "fence_after lowered below an outage", nodes, 1, err, "witness:fence_after")

	// Approved by name, or all at once, it is stored.
	res, err := c.Apply(ctx, client.ApplyRequest{YAML: absent, Approval: schema.Approval{Approve: []string{"delete:docs"}}})
	if err != nil || res.Generation != 2 {
		t.Fatalf("state: absent approved by name: want generation 2, got %+v, %v", res, err)
	}
	waitSpec(t, nodes, 2, absent)
	res, err = c.Apply(ctx, client.ApplyRequest{YAML: strings.Replace(dropped, "10GiB}", "10GiB, state: absent}", 1), Approval: schema.Approval{Approve: []string{"all"}}})
	if err != nil || res.Generation != 3 {
		t.Fatalf("an appliance dropped, approved with all: want generation 3, got %+v, %v", res, err)
	}
}

// TestApplyRefusesAnotherFleetsFile: a file whose fleet: is not this
// fleet's, or that names none of its appliances, is refused unless the
// request says so by its own field, which "all" does not give.
func TestApplyRefusesAnotherFleetsFile(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	c := clientFor(t, readyLeader(t, nodes))
	ctx := t.Context()
	all := schema.Approval{Approve: []string{"all"}}

	// Before any spec: the CA's fleet ("fleet" by default) decides.
	_, err := c.Apply(ctx, client.ApplyRequest{YAML: "fleet: other\n" + approveSpec, Approval: all})
	ae := wantRefused(t, "a first spec of another fleet", nodes, 0, err, "rename-fleet:other")
	if !strings.Contains(ae.Message, `"rename_fleet": true`) {
		t.Fatalf("the refusal does not say how to rename: %s", ae.Message)
	}

	if _, err := c.Apply(ctx, client.ApplyRequest{YAML: approveSpec}); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	waitSpec(t, nodes, 1, approveSpec)
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: "fleet: other\n" + approveSpec, Approval: all})
	wantRefused(t, "another fleet's spec", nodes, 1, err, "rename-fleet:other")

	strangers := `version: 1
appliances:
  - {name: b1, address: 127.0.0.1:7501, pools: [{name: tank, path: /mnt/tank}]}
`
	_, err = c.Apply(ctx, client.ApplyRequest{YAML: strangers, Approval: all})
	wantRefused(t, "a spec naming none of the appliances", nodes, 1, err, "replace-appliances:")

	res, err := c.Apply(ctx, client.ApplyRequest{YAML: "fleet: office\n" + approveSpec, Approval: schema.Approval{RenameFleet: true}})
	if err != nil || res.Generation != 2 {
		t.Fatalf("a rename with rename_fleet: want generation 2, got %+v, %v", res, err)
	}
}
