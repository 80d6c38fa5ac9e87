package preview_test

import (
	"bytes"
	"testing"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/preview"
	"github.com/fleetctl/fleetctl/schema"
)

// TestRenderNoChanges: the text fleetctl diff prints (and the dashboard
// shows) for a file that changes nothing, with one appliance that could
// not plan. testdata/diff_golden.txtar checks the full output through the
// CLI.
func TestRenderNoChanges(t *testing.T) {
	rep := preview.Report{Changes: schema.Changes{}, Appliances: []client.AppliancePlan{
		{Appliance: "nas1"},
		{Appliance: "nas2", Error: "nas2 did not answer"},
	}}
	var b bytes.Buffer
	if err := rep.Render(&b, false); err != nil {
		t.Fatal(err)
	}
	want := `Spec changes:
No changes. The stored spec matches the file.

Appliance nas1:
  No changes.

Appliance nas2:
  ? unknown: nas2 did not answer

Plan: 0 to add, 0 to change, 0 to destroy; 1 to look at.
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	if rep.Changed() {
		t.Errorf("Changed() = true for a report with no changes")
	}
}
