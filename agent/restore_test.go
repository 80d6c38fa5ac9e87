package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
)

// TestMatchSnapshot: a copy is found by its path or, when unique, its
// name; a copy of another share, an unknown name and a name two copies
// share are errors (the first two "not found").
func TestMatchSnapshot(t *testing.T) {
	copies := []client.ShareCopy{
		{Share: "projects", Kind: reconcile.CopyScheduled, Appliance: "n1", Pool: "tank", Path: "/p1/.fleetctl/snapshots/projects/projects.20261125T084600Z"},
		{Share: "projects", Kind: reconcile.CopyReceived, Appliance: "n2", Pool: "tank", Path: "/p2/.fleetctl/received/projects/projects.20261125T084600Z"},
		{Share: "projects", Kind: reconcile.CopyReplication, Appliance: "n1", Pool: "tank", Path: "/p1/.fleetctl/replication/projects/20261125T090000Z"},
		{Share: "scratch", Kind: reconcile.CopyFinal, Appliance: "n1", Pool: "tank", Path: "/p1/.fleetctl/snapshots/scratch/scratch.final.20261126T000000Z"},
	}
	for from, want := range map[string]int{
		"/p1/.fleetctl/snapshots/projects/projects.20261125T084600Z": 0,
		"/p2/.fleetctl/received/projects/projects.20261125T084600Z/": 1,
		"20261125T090000Z": 2,
	} {
		got, err := matchSnapshot(copies, "projects", from)
		if err != nil || got != copies[want] {
			t.Errorf("matchSnapshot(%s) = %+v, %v; want %+v", from, got, err, copies[want])
		}
	}
	if got, err := matchSnapshot(copies, "scratch", "scratch.final.20261126T000000Z"); err != nil || got != copies[3] {
		t.Errorf("the final snapshot of scratch: %+v, %v", got, err)
	}
	for from, why := range map[string]string{
		"scratch.final.20261126T000000Z":                                 "is a copy of share scratch, not of projects",
		"/p1/.fleetctl/snapshots/scratch/scratch.final.20261126T000000Z": "is a copy of share scratch, not of projects",
		"projects.20991231T000000Z":                                      "no copy of projects is named",
		"/p1/projects":                                                   "no copy of projects is named",
	} {
		_, err := matchSnapshot(copies, "projects", from)
		if !errors.Is(err, errRestoreNotFound) || !strings.Contains(err.Error(), why) {
			t.Errorf("matchSnapshot(%s) = %v; want not found saying %q", from, err, why)
		}
	}
	_, err := matchSnapshot(copies, "projects", "projects.20261125T084600Z")
	if err == nil || errors.Is(err, errRestoreNotFound) || !strings.Contains(err.Error(), "names 2 copies") {
		t.Errorf("an ambiguous name: %v", err)
	}
}

// TestCheckRestoreRequest: a restore names its share and copy and one of
// --path/--to and --as.
func TestCheckRestoreRequest(t *testing.T) {
	for _, q := range []client.RestoreRequest{
		{Share: "p", From: "s", To: "/d"},
		{Share: "p", From: "s", Path: "a", To: "/d"},
		{Share: "p", From: "s", As: "new"},
	} {
		if err := checkRestoreRequest(q); err != nil {
			t.Errorf("%+v: %v", q, err)
		}
	}
	for _, q := range []client.RestoreRequest{
		{From: "s", To: "/d"},
		{Share: "p", To: "/d"},
		{Share: "p", From: "s"},
		{Share: "p", From: "s", Path: "a"},
		{Share: "p", From: "s", As: "new", To: "/d"},
		{Share: "p", From: "s", As: "new", Path: "a"},
	} {
		if err := checkRestoreRequest(q); err == nil {
			t.Errorf("%+v: accepted", q)
		}
	}
}
