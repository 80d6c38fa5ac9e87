package agent

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/fleetctl/fleetctl/schema"
)

// TestShutdownEndsEveryGoroutine: once Shutdown returns, nothing a node
// started still runs — not the reconciler, the replication sender, the
// failback loop, the lease and fence loops, the witness, Raft, the API
// server or the transport. Not parallel: goleak looks at the whole test
// process, so the goroutines of earlier tests are set aside first.
func TestShutdownEndsEveryGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleWitness}
	nodes, drivers := witnessFleet(t, roles...)
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", "n1", "n2", schema.FailoverAuto})
	for _, n := range nodes {
		if err := n.Shutdown(); err != nil {
			t.Fatalf("shut down %s: %v", n.Name(), err)
		}
	}
	goleak.VerifyNone(t, before)
}
