package agent

import (
	"fmt"
	"strings"
	"testing"

	gometrics "github.com/hashicorp/go-metrics/compat"

	"github.com/fleetctl/fleetctl/client"
)

// fleetSpec returns a valid spec with shares shares on two appliances; quota
// sets every share's quota, so two calls with different quotas differ in
// every share.
func fleetSpec(shares int, quota string) string {
	var b strings.Builder
	b.WriteString(`version: 1
appliances:
  - name: n1
    address: 127.0.0.1:7401
    pools: [{name: tank, path: /mnt/tank}]
  - name: n2
    address: 127.0.0.1:7402
    pools: [{name: tank, path: /mnt/tank}]
  - name: n3
    address: 127.0.0.1:7403
    role: witness
shares:
`)
	for i := range shares {
		fmt.Fprintf(&b, `  - name: share-%04d
    appliance: n%d
    pool: tank
    quota: %s
    snapshots: {schedule: every 1h, retention: 24h 7d}
    replication: {to: n%d/tank, schedule: every 10m, retention: 24h}
`, i, i%2+1, quota, (i+1)%2+1)
	}
	return b.String()
}

// benchmarkApply measures one apply through a follower of a 3-agent fleet
// on 127.0.0.1 (real TLS, real bolt stores): validation on the leader, the
// Raft commit on a quorum, the FSM decoding the spec. Each iteration
// alternates between two specs that differ in every share, so every apply
// commits a new generation.
func benchmarkApply(b *testing.B, shares int) {
	nodes := newFleet(b, 3, 0)
	leader := readyLeader(b, nodes)
	cl := clientFor(b, notLeader(nodes, leader))
	specs := [2]string{fleetSpec(shares, "100GiB"), fleetSpec(shares, "200GiB")}
	b.SetBytes(int64(len(specs[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := cl.Apply(b.Context(), client.ApplyRequest{YAML: specs[i%2]}); err != nil {
			b.Fatalf("apply: %v", err)
		}
	}
}

// BenchmarkApply1Share is the baseline: the fixed cost of an apply.
func BenchmarkApply1Share(b *testing.B) { benchmarkApply(b, 1) }

// BenchmarkApply1000Shares is an apply of a 1,000-share spec (about 180 KB).
func BenchmarkApply1000Shares(b *testing.B) { benchmarkApply(b, 1000) }

// BenchmarkRaftHeartbeatSample is what renaming raft's metric costs for
// each heartbeat the leader sends a member (the sink itself discards).
func BenchmarkRaftHeartbeatSample(b *testing.B) {
	s := raftNames{&gometrics.BlackholeSink{}}
	key := []string{"raft", "replication", "heartbeat"}
	labels := []gometrics.Label{{Name: "peerId", Value: "n42"}}
	b.ReportAllocs()
	for b.Loop() {
		s.AddSampleWithLabels(key, 0.5, labels)
	}
}
