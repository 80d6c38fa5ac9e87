package ui

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

func TestLatencyGraph(t *testing.T) {
	l := newLatency(time.Hour)
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	l.add(t0.Add(-2*time.Hour), []client.WitnessMember{{Name: "nas1", Reachable: true, RTTMillis: 99}}) // out of the window by the end
	l.add(t0, []client.WitnessMember{{Name: "nas1", Reachable: true, RTTMillis: 2}, {Name: "nas2", Reachable: true}})
	l.add(t0.Add(time.Minute), []client.WitnessMember{{Name: "nas1", Reachable: true, RTTMillis: 4}, {Name: "nas2", Reachable: false}})
	l.add(t0.Add(2*time.Minute), []client.WitnessMember{{Name: "nas1", Reachable: true, RTTMillis: 3}, {Name: "nas2", Reachable: true, RTTMillis: 1}})
	g := l.graph(t0.Add(2 * time.Minute))
	if g.Span != "2m0s" || g.MaxMS != 5 {
		t.Fatalf("span %s, top %v ms; want the 2m0s sampled (the old sample forgotten) and 5 ms", g.Span, g.MaxMS)
	}
	if len(g.Lines) != 2 {
		t.Fatalf("%d lines, want nas1 and nas2", len(g.Lines))
	}
	n1, n2 := g.Lines[0], g.Lines[1]
	if n1.Samples != 3 || n1.Min != 2 || n1.Max != 4 || n1.Avg != 3 {
		t.Errorf("nas1: %+v, want 3 samples 2/3/4 ms", n1)
	}
	if pts := strings.Fields(n1.Points); len(pts) != 3 || pts[0] != "0.0,96.0" || pts[2] != "600.0,64.0" {
		t.Errorf("nas1 points %q, want 3 from 0.0,96.0 to 600.0,64.0", n1.Points)
	}
	// A round trip of 0 is "not measured yet", not a fast one.
	if n2.Samples != 1 || n2.Unreachable != 1 || len(strings.Fields(n2.Points)) != 2 {
		t.Errorf("nas2: %+v, want 1 measured sample (drawn as a dot) and 1 unreachable", n2)
	}
}
