package agent

import (
	"reflect"
	"testing"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/schema"
)

// TestApplyAnswersWithTheDiff: the leader answers an apply with the diff
// of the spec replaced and the one stored, as the client would work it
// out from Previous, except when the diff needs where a share is active.
func TestApplyAnswersWithTheDiff(t *testing.T) {
	t.Parallel()
	n := startNode(t, bootstrapConfig(t, "n1"))
	readyLeader(t, []*Node{n})
	c := clientFor(t, n)
	parse := func(yaml string) *schema.Spec {
		t.Helper()
		spec, err := schema.Parse("fleet.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	apply := func(req client.ApplyRequest) *client.ApplyResponse {
		t.Helper()
		res, err := c.Apply(t.Context(), req)
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return res
	}
	wantDiff := func(res *client.ApplyResponse, old, new *schema.Spec) {
		t.Helper()
		if res.Changes == nil {
			t.Fatalf("generation %d: no diff in the answer", res.Generation)
		}
		if want := schema.Diff(old, new); !reflect.DeepEqual(*res.Changes, want) {
			t.Fatalf("generation %d: the leader's diff\n%+v\nwant\n%+v", res.Generation, *res.Changes, want)
		}
	}

	wantDiff(apply(client.ApplyRequest{YAML: specOne}), nil, parse(specOne))
	res := apply(client.ApplyRequest{YAML: specTwo})
	wantDiff(res, parse(specOne), parse(specTwo))
	if res.Previous != specOne {
		t.Fatalf("Previous: want the first spec, got %q", res.Previous)
	}
	if res := apply(client.ApplyRequest{YAML: specTwo}); !res.Unchanged || res.Changes != nil {
		t.Fatalf("the same spec again: want unchanged and no diff, got %+v", res)
	}

	absent := `version: 1
appliances:
  - {name: nas1, address: 127.0.0.1:7401, pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas2, address: 127.0.0.1:7402, pools: [{name: tank, path: /mnt/tank}]}
shares:
  - name: docs
    appliance: nas1
    pool: tank
    state: absent
    replication: {to: nas2/tank, schedule: every 10m, retention: 24h}
`
	res = apply(client.ApplyRequest{YAML: absent, Approval: schema.Approval{Approve: []string{"all"}}})
	if res.Changes != nil || res.Previous != specTwo {
		t.Fatalf("a replicated share made absent: want no diff (it needs where the share is active) and Previous, got %+v", res)
	}
}
