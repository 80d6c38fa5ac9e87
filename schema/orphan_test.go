package schema_test

import (
	"strings"
	"testing"

	"github.com/fleetctl/fleetctl/schema"
)

const orphanSpec = `version: 1
appliances:
  - name: nas1
    address: nas1.example:7400
    pools: [{name: tank, path: /mnt/tank}]
  - name: w
    address: w.example:7400
    role: witness
shares:
  - {name: projects, appliance: nas1, pool: tank}
`

// TestAbsentShareSnippetValidates: the item AbsentShare prints, pasted
// under shares: as it is, makes a valid spec that marks the subvolume
// state: absent on its appliance and pool; names it cannot adopt are
// refused with the reason.
func TestAbsentShareSnippetValidates(t *testing.T) {
	spec, err := schema.Parse("fleet.yaml", []byte(orphanSpec))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scratch", "123", "true", "null", "1e3", "old.vms_2", "projects.before-epoch-2", "0x1F"} {
		item, err := spec.AbsentShare("nas1", "tank", name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pasted := orphanSpec + "  " + item + "\n"
		got, err := schema.Parse("pasted.yaml", []byte(pasted))
		if err != nil {
			t.Fatalf("%s: the pasted item %s does not validate: %v", name, item, err)
		}
		sh := got.Share(name)
		if sh == nil || sh.Appliance != "nas1" || sh.Pool != "tank" || sh.State != schema.StateAbsent {
			t.Fatalf("%s: pasted %s, got share %+v", name, item, sh)
		}
	}
	if item, _ := spec.AbsentShare("nas1", "tank", "scratch"); item != "- {name: scratch, appliance: nas1, pool: tank, state: absent}" {
		t.Fatalf("item: got %q", item)
	}
	if len(spec.Shares) != 1 {
		t.Fatalf("AbsentShare changed the spec: %d shares", len(spec.Shares))
	}
	for _, c := range []struct{ appliance, pool, name, why string }{
		{"nas1", "tank", "projects", `share "projects" is already defined`},
		{"nas1", "tank", "has space", "not a valid share name"},
		{"nas1", "tank", strings.Repeat("x", 70), "not a valid share name"},
		{"nas1", "gone", "scratch", `no pool "gone"`},
		{"w", "tank", "scratch", "witness"},
	} {
		_, err := spec.AbsentShare(c.appliance, c.pool, c.name)
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s on %s/%s: want an error with %q, got %v", c.name, c.appliance, c.pool, c.why, err)
		}
	}
}
