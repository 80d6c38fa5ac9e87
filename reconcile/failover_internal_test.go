package reconcile

import "testing"

func TestNewestCommon(t *testing.T) {
	snap := func(name string, received bool, uuid, recv string) sourceSnap {
		tm, _ := parseStamp(name)
		return sourceSnap{name: name, time: tm, received: received, sv: Subvolume{UUID: uuid, ReceivedUUID: recv}}
	}
	// The new active after a failover: it received R1 (a copy of the old
	// active's X1) and promoted it, then sent Y1 (a snapshot of the
	// promoted share).
	r1 := snap("20261125T110000Z", true, "r1", "x1")
	y1 := snap("20261125T120000Z", false, "y1", "")
	for _, c := range []struct {
		name  string
		cands []sourceSnap
		held  []Subvolume
		want  string
	}{
		{"the old active holds its own X1: parent R1", []sourceSnap{r1}, []Subvolume{{UUID: "x1"}}, "20261125T110000Z"},
		{"it received Y1 since: parent Y1", []sourceSnap{r1, y1}, []Subvolume{{UUID: "x1"}, {UUID: "z", ReceivedUUID: "y1"}}, "20261125T120000Z"},
		{"R1's own UUID means nothing to it", []sourceSnap{r1}, []Subvolume{{UUID: "q", ReceivedUUID: "r1"}}, ""},
		{"nothing in common", []sourceSnap{r1, y1}, []Subvolume{{UUID: "x0"}, {ReceivedUUID: "y0"}}, ""},
		{"the usual: by received UUID", []sourceSnap{y1}, []Subvolume{{UUID: "z", ReceivedUUID: "y1"}}, "20261125T120000Z"},
	} {
		got := ""
		if p := newestCommon(c.cands, c.held); p != nil {
			got = p.name
		}
		if got != c.want {
			t.Errorf("%s: parent %q, want %q", c.name, got, c.want)
		}
	}
}
