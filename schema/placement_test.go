package schema

import "testing"

func TestSharePlace(t *testing.T) {
	repl := &Share{Name: "projects", Appliance: "nas1", Pool: "tank", Replication: &Replication{To: Target{Appliance: "nas2", Pool: "backup"}}}
	plain := &Share{Name: "scratch", Appliance: "nas1", Pool: "tank"}
	home, away := Target{Appliance: "nas1", Pool: "tank"}, Target{Appliance: "nas2", Pool: "backup"}
	for _, c := range []struct {
		name   string
		sh     *Share
		a      Activation
		want   Placement
		wantOK bool
	}{
		{"no activation: the spec's appliance", repl, Activation{}, Placement{Active: home, Replica: away}, true},
		{"the spec's appliance named", repl, Activation{Appliance: "nas1", Epoch: 2}, Placement{Active: home, Replica: away, Epoch: 2}, true},
		{"failed over to the replica", repl, Activation{Appliance: "nas2", Epoch: 1}, Placement{Active: away, Replica: home, Epoch: 1}, true},
		{"stale: an appliance that holds no copy", repl, Activation{Appliance: "nas3", Epoch: 3}, Placement{Active: Target{Appliance: "nas3"}, Replica: home, Epoch: 3}, false},
		{"no replication", plain, Activation{}, Placement{Active: home}, true},
		{"no replication, another appliance", plain, Activation{Appliance: "nas2", Epoch: 1}, Placement{Active: Target{Appliance: "nas2"}, Replica: home, Epoch: 1}, false},
	} {
		got, ok := c.sh.Place(c.a)
		if got != c.want || ok != c.wantOK {
			t.Errorf("%s: Place(%+v) = %+v, %v; want %+v, %v", c.name, c.a, got, ok, c.want, c.wantOK)
		}
	}
	if !repl.Holds("nas1") || !repl.Holds("nas2") || repl.Holds("nas3") || plain.Holds("nas2") {
		t.Errorf("Holds: wrong answer")
	}
}
