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
