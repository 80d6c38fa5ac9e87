package agent

import (
	"strings"
	"testing"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/store"
)

const specTrails = `version: 1
appliances:
  - name: n1
    address: 127.0.0.1:7401
    pools: [{name: tank, path: /mnt/tank}]
  - name: n2
    address: 127.0.0.1:7402
    pools: [{name: tank, path: /mnt/tank}]
shares:
  - name: projects
    appliance: n1
    pool: tank
    replication: {to: n2/tank, schedule: every 1h, retention: 24h}
  - {name: docs, appliance: n1, pool: tank}
`

// TestTrailNotFound: a trail of a share the spec does not have, or does
// not replicate, is "not found" naming it, never an empty trail; a
// replicated share with no attempt yet, and a share dropped from the spec
// whose attempts are still recorded, have their trail.
func TestTrailNotFound(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, bootstrapConfig(t, "n1"))
	readyLeader(t, []*Node{n1})
	c := clientFor(t, n1)
	ctx := t.Context()

	_, err := c.Trail(ctx, "projects")
	ae := wantAPIError(t, "trail before any spec", err, client.CodeNotFound)
	if ae.Status != 404 || !strings.Contains(ae.Message, `"projects"`) {
		t.Fatalf("trail before any spec: want 404 naming the share, got %d %q", ae.Status, ae.Message)
	}

	if _, err := c.Apply(ctx, client.ApplyRequest{YAML: specTrails}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitSpec(t, []*Node{n1}, 1, specTrails)

	if trail, err := c.Trail(ctx, "projects"); err != nil || len(trail) != 0 {
		t.Fatalf("trail of a replicated share with no attempt yet: want [] and no error, got %v, %v", trail, err)
	}
	for share, want := range map[string]string{
		"no-such-share": `the spec has no share "no-such-share"`,
		"docs":          `share "docs" is not replicated`,
	} {
		_, err := c.Trail(ctx, share)
		ae := wantAPIError(t, "trail of "+share, err, client.CodeNotFound)
		if ae.Status != 404 || !strings.Contains(ae.Message, want) {
			t.Fatalf("trail of %s: want 404 with %q, got %d %q", share, want, ae.Status, ae.Message)
		}
	}

	// A drill of a share the spec lacks or does not replicate: the same,
	// and nothing recorded.
	for share, want := range map[string]string{
		"no-such-share": `the spec has no share "no-such-share"`,
		"docs":          `share "docs" is not replicated`,
	} {
		_, err := c.Drill(ctx, client.DrillRequest{Share: share, Check: "true"})
		ae := wantAPIError(t, "drill of "+share, err, client.CodeNotFound)
		if ae.Status != 404 || !strings.Contains(ae.Message, want) {
			t.Fatalf("drill of %s: want 404 with %q, got %d %q", share, want, ae.Status, ae.Message)
		}
	}
	if _, err := c.Drill(ctx, client.DrillRequest{Share: "projects", Timeout: "soon"}); err == nil || !strings.Contains(err.Error(), `timeout "soon"`) {
		t.Fatalf("drill with a bad timeout: %v", err)
	}
	if trails := n1.FSM().State().Trails; len(trails) != 0 {
		t.Fatalf("a refused drill recorded %v", trails)
	}

	// History outlives the share's line in the spec.
	entry := store.TrailEntry{ID: "t1", Share: "old", Side: "send", From: "n1", To: "n2", Result: "ok"}
	if _, err := n1.apply(store.CmdAppendTrail, store.AppendTrail{Entry: entry}); err != nil {
		t.Fatalf("record a trail entry: %v", err)
	}
	if trail, err := c.Trail(ctx, "old"); err != nil || len(trail) != 1 || trail[0].ID != "t1" {
		t.Fatalf("trail of a share no longer in the spec: want its recorded attempt, got %v, %v", trail, err)
	}
}
