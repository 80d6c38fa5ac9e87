package raftstore

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/reconcile"
)

// Golden log entries: each is a version 1 command exactly as fleetctl
// writes it to the log, every field set. Never edit them: agents must
// apply what old releases wrote. A renamed JSON tag in a command type, or
// in the reconcile types the log embeds (ShareFacts, TrailEntry), makes
// one of these tests fail instead of silently changing the log format.
var (
	goldenSetNodeStatusV1 = []byte("\x02\x01" +
		`{"node":"nas1","status":{"observed_generation":7,"reported_at":"2026-11-01T10:00:00Z","errors":["pool tank: missing"],"converged":false,` +
		`"shares":[{"name":"projects","pool":"tank","exists":true,"referenced":1048576,"quota":2147483648,"snapshots":3,"demoted":true,"diverged":1}],` +
		`"orphans":["scratch"],"fenced":["projects"]}}`)
	goldenAppendTrailV1 = []byte("\x03\x01" +
		`{"entry":{"id":"t1","share":"projects","side":"send","from":"nas1","to":"nas2","start":"2026-11-01T10:00:00Z","end":"2026-11-01T10:00:05Z",` +
		`"kind":"incremental","parent":"20261101T090000Z","snapshot":"20261101T100000Z","bytes":4096,"result":"ok","error":"","note":"final"}}`)
	goldenWitnessEventV1 = []byte("\x84\x01" +
		`{"at":"2026-11-01T10:00:00Z","member":"nas1","share":"projects","event":"fenced","detail":"nas1 made projects read-only"}`)
	goldenFailoverV1 = []byte("\x05\x01" +
		`{"share":"projects","from":"nas1","to":"nas2","expected_epoch":0,"reason":"nas1 unreachable for 9s > failover_after 8s","at":"2026-11-01T10:00:00Z"}`)
)

var goldenAt = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func applyGolden(t *testing.T, f *FSM, index uint64, data []byte) any {
	t.Helper()
	resp := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	if err, ok := resp.(error); ok {
		t.Fatalf("golden entry % x…: %v", data[:2], err)
	}
	return resp
}

func TestCommandGoldenSetNodeStatusV1(t *testing.T) {
	f := newTestFSM()
	applyGolden(t, f, 1, goldenSetNodeStatusV1)
	want := NodeStatus{
		ObservedGeneration: 7, ReportedAt: goldenAt, Errors: []string{"pool tank: missing"},
		Shares:  []reconcile.ShareFacts{{Name: "projects", Pool: "tank", Exists: true, Referenced: 1 << 20, Quota: 2 << 30, Snapshots: 3, Demoted: true, Diverged: 1}},
		Orphans: []string{"scratch"}, Fenced: []string{"projects"},
	}
	if got := f.State().Nodes["nas1"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("golden v1 set-node-status:\nwant %+v\ngot  %+v", want, got)
	}
}

func TestCommandGoldenAppendTrailV1(t *testing.T) {
	f := newTestFSM()
	applyGolden(t, f, 1, goldenAppendTrailV1)
	want := TrailEntry{
		ID: "t1", Share: "projects", Side: "send", From: "nas1", To: "nas2",
		Start: goldenAt, End: goldenAt.Add(5 * time.Second), Kind: "incremental",
		Parent: "20261101T090000Z", Snapshot: "20261101T100000Z", Bytes: 4096, Result: "ok", Note: "final",
	}
	got := f.State().Trails["projects"]
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("golden v1 append-trail:\nwant [%+v]\ngot  %+v", want, got)
	}
}

func TestCommandGoldenWitnessEventV1(t *testing.T) {
	f := newTestFSM()
	applyGolden(t, f, 1, goldenWitnessEventV1)
	want := WitnessEvent{At: goldenAt, Member: "nas1", Share: "projects", Event: EventFenced, Detail: "nas1 made projects read-only"}
	got := f.State().WitnessLog
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("golden v1 witness-event:\nwant [%+v]\ngot  %+v", want, got)
	}
}

func TestCommandGoldenFailoverV1(t *testing.T) {
	f := newTestFSM()
	resp := applyGolden(t, f, 1, goldenFailoverV1)
	if got, ok := resp.(FailoverResult); !ok || got.Epoch != 1 {
		t.Fatalf("golden v1 failover: want epoch 1, got %#v", resp)
	}
	if got := f.State().Failover["projects"]; got.Active != "nas2" || got.Epoch != 1 {
		t.Fatalf("golden v1 failover: want projects active on nas2 at epoch 1, got %+v", got)
	}
}
