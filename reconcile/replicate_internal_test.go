package reconcile

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

func TestNextStamp(t *testing.T) {
	at := func(s string) sourceSnap {
		tm, ok := parseStamp(s)
		if !ok {
			t.Fatalf("bad stamp %s", s)
		}
		return sourceSnap{name: s, time: tm}
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 700e6, time.UTC)
	for _, c := range []struct {
		snaps []sourceSnap
		want  string
	}{
		{nil, "20261125T120000Z"},
		{[]sourceSnap{at("20261125T110000Z")}, "20261125T120000Z"},
		{[]sourceSnap{at("20261125T120000Z")}, "20261125T120001Z"}, // same second
		{[]sourceSnap{at("20261125T130000Z")}, "20261125T130001Z"}, // the clock went back
	} {
		if got := nextStamp(now, c.snaps).Format(StampFormat); got != c.want {
			t.Errorf("nextStamp after %v = %s, want %s", c.snaps, got, c.want)
		}
	}
	for _, bad := range []string{"", "20261125T120000", "20261125t120000Z", "20261325T120000Z", "../20261125T120000Z", "20261125T120000Z/x", "2026-11-25T12:00:00Z"} {
		if _, ok := parseStamp(bad); ok {
			t.Errorf("parseStamp(%q) accepted it", bad)
		}
	}
}

// replicatedSpec is a valid spec of shares shares alternating between n1
// and n2, each replicated to the other.
func replicatedSpec(tb testing.TB, shares int) *schema.Spec {
	tb.Helper()
	var b strings.Builder
	b.WriteString("version: 1\nappliances:\n  - {name: n1, address: 'n1:7400', pools: [{name: tank, path: /mnt/tank}]}\n  - {name: n2, address: 'n2:7400', pools: [{name: tank, path: /mnt/tank}]}\n  - {name: w, address: 'w:7400', role: witness}\nshares:\n")
	for i := range shares {
		fmt.Fprintf(&b, "  - name: share-%04d\n    appliance: n%d\n    pool: tank\n    replication: {to: n%d/tank, schedule: every 10m, retention: 24h}\n", i, i%2+1, (i+1)%2+1)
	}
	spec, err := schema.Parse("fleet.yaml", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return spec
}

// TestReplicatorSources: the shares an appliance sends are the replicated
// ones active on it, in the spec's order, each as sourceOf resolves it.
func TestReplicatorSources(t *testing.T) {
	spec := replicatedSpec(t, 6)
	r := &Replicator{Appliance: "n2"}
	var got []string
	for _, src := range r.sources(spec) {
		want, err := sourceOf(spec, "n2", src.share.Name, nil)
		if err != nil || !reflect.DeepEqual(src, want) {
			t.Fatalf("%s: sources gave %+v, sourceOf %+v (%v)", src.share.Name, src, want, err)
		}
		got = append(got, src.share.Name)
	}
	if want := []string{"share-0001", "share-0003", "share-0005"}; !slices.Equal(got, want) {
		t.Fatalf("sources of n2: %v, want %v", got, want)
	}
}

// BenchmarkReplicatorSources1000 is what the replicator of every storage
// agent works out again at each change of the spec: which of 1,000
// replicated shares it sends.
func BenchmarkReplicatorSources1000(b *testing.B) {
	spec := replicatedSpec(b, 1000)
	r := &Replicator{Appliance: "n1"}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(r.sources(spec)); n != 500 {
			b.Fatalf("%d sources, want 500", n)
		}
	}
}

// TestParseStampAsTimeParse checks the hand-written parseStamp against what
// it replaced: time.Parse of StampFormat, and the result formatted back
// must be the name.
func TestParseStampAsTimeParse(t *testing.T) {
	old := func(s string) (time.Time, bool) {
		tm, err := time.Parse(StampFormat, s)
		if err != nil || tm.Format(StampFormat) != s {
			return time.Time{}, false
		}
		return tm, true
	}
	cases := []string{
		"20261125T120000Z", "00000101T000000Z", "99991231T235959Z", "20240229T120000Z", "20250229T120000Z",
		"20261131T120000Z", "20261100T120000Z", "20261225T240000Z", "20261225T236000Z", "20261225T235960Z",
		"2026112XT120000Z", "+0261125T120000Z", "-0261125T120000Z", "20261125 120000Z", "20261125T120000z",
		"20261125T1200000", "20261125T12000Z", "120261125T12000Z", "20261125T12:00Z", "0026112aT120000Z",
	}
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := range 2000 {
		cases = append(cases, base.Add(time.Duration(i)*7919*time.Second).Format(StampFormat))
	}
	for _, s := range cases {
		got, gotOK := parseStamp(s)
		want, wantOK := old(s)
		if gotOK != wantOK || !got.Equal(want) || got.Location() != want.Location() {
			t.Errorf("parseStamp(%q) = %v, %t; time.Parse gives %v, %t", s, got, gotOK, want, wantOK)
		}
	}
}
