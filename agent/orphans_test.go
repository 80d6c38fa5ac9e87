package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// TestOrphansList: the fleet's orphans carry what their appliance reported
// (size, creation time; unknown when an older agent did not report them)
// and the item that adopts each, or why none can.
func TestOrphansList(t *testing.T) {
	spec, err := schema.Parse("fleet.yaml", []byte(specTwo))
	if err != nil {
		t.Fatal(err)
	}
	size, created := uint64(3<<30), time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	st := &store.State{Spec: spec, Nodes: map[string]store.NodeStatus{"nas1": {
		Orphans:     []string{"tank/old-vms", "tank/docs.copy", "tank/docs"},
		OrphanFacts: []store.OrphanFact{{Pool: "tank", Name: "old-vms", Referenced: &size, Created: created}},
	}}}
	got := orphans(st)
	if len(got) != 3 {
		t.Fatalf("want 3 orphans, got %+v", got)
	}
	o := got[0]
	if o.Appliance != "nas1" || o.Pool != "tank" || o.Name != "old-vms" || o.Referenced == nil || *o.Referenced != size || o.Created == nil || !o.Created.Equal(created) ||
		o.Adopt != "- {name: old-vms, appliance: nas1, pool: tank, state: absent}" || o.Note != "" {
		t.Fatalf("old-vms: got %+v", o)
	}
	if o := got[1]; o.Referenced != nil || o.Created != nil || o.Adopt == "" {
		t.Fatalf("docs.copy (no facts reported): want unknown size and age and an item, got %+v", o)
	}
	if o := got[2]; o.Adopt != "" || !strings.Contains(o.Note, `share "docs" is already defined`) {
		t.Fatalf("docs (a share has the name): want no item and why, got %+v", o)
	}
}
