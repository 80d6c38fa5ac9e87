package reconcile

import (
	"testing"
	"time"
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
