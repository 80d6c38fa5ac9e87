package schema_test

import (
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fleetctl/fleetctl/schema"
)

func benchSpec(shares int) []byte {
	var b strings.Builder
	b.WriteString("version: 1\nappliances:\n  - {name: n1, address: 'n1:7400', pools: [{name: tank, path: /mnt/tank}]}\n  - {name: n2, address: 'n2:7400', pools: [{name: tank, path: /mnt/tank}]}\n  - {name: w, address: 'w:7400', role: witness}\nshares:\n")
	for i := range shares {
		fmt.Fprintf(&b, "  - name: share-%04d\n    appliance: n1\n    pool: tank\n    quota: 100GiB\n    snapshots: {schedule: every 1h, retention: 24h 7d}\n    replication: {to: n2/tank, schedule: every 10m, retention: 24h}\n", i)
	}
	return []byte(b.String())
}

// BenchmarkParse1000Shares decodes and validates a 1,000-share spec.
func BenchmarkParse1000Shares(b *testing.B) {
	data := benchSpec(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schema.Parse("fleet.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkYAMLNode1000Shares is Parse's baseline: only the YAML library
// reading the same file into a node tree, no decoding or validation.
func BenchmarkYAMLNode1000Shares(b *testing.B) {
	data := benchSpec(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var n yaml.Node
		if err := yaml.Unmarshal(data, &n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiff1000Shares diffs two parsed 1,000-share specs that differ in
// every share's quota: what fleetctl apply and diff print after parsing.
func BenchmarkDiff1000Shares(b *testing.B) {
	old, err := schema.Parse("old.yaml", benchSpec(1000))
	if err != nil {
		b.Fatal(err)
	}
	new, err := schema.Parse("new.yaml", []byte(strings.ReplaceAll(string(benchSpec(1000)), "quota: 100GiB", "quota: 200GiB")))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if cs := schema.Diff(old, new); len(cs) != 1000 {
			b.Fatalf("%d changes, want 1000", len(cs))
		}
	}
}
