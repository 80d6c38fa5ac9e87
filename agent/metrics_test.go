package agent

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/store"
)

// TestFailoverTally: failovers are counted once each, by share and kind of
// reason, only when they appear after the agent started (a replayed log is
// not a failover), and still counted when more events than the log keeps
// came between two scrapes.
func TestFailoverTally(t *testing.T) {
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ev := func(sec int, share, event, detail string) store.WitnessEvent {
		return store.WitnessEvent{At: start.Add(time.Duration(sec) * time.Second), Member: "nas1", Share: share, Event: event, Detail: detail}
	}
	old := ev(-60, "docs", store.EventFailover, "nas1 unreachable for 31s > failover_after 30s; docs now active on nas2, epoch 1")
	tally := failoverTally{since: start}
	log := []store.WitnessEvent{old, ev(-50, "", store.EventUnreachable, "")}
	if got := tally.observe(log); len(got) != 0 {
		t.Fatalf("a log replayed at start: want nothing counted, got %v", got)
	}
	log = append(log,
		ev(1, "docs", store.EventFailover, "planned switchover by admin:alice; final snapshot 20261129T120001Z; docs now active on nas1, epoch 2"),
		ev(2, "docs", store.EventFailover, "failback: nas1 caught up; final snapshot x; docs now active on nas1, epoch 3"),
		ev(3, "", store.EventReachable, ""))
	want := map[failoverKey]float64{{"docs", "switchover"}: 1, {"docs", "failback"}: 1}
	if got := tally.observe(log); !maps.Equal(got, want) {
		t.Fatalf("two failovers: want %v, got %v", want, got)
	}
	if got := tally.observe(log); !maps.Equal(got, want) {
		t.Fatalf("the same log again: want %v, got %v", want, got)
	}
	// More events than the log keeps: the one seen last rolled off.
	var flood []store.WitnessEvent
	for i := range store.MaxWitnessLog {
		flood = append(flood, ev(10+i, "", store.EventDegraded, fmt.Sprint(i)))
	}
	flood[len(flood)-1] = ev(500, "projects", store.EventFailover, "nas1 unreachable for 31s > failover_after 30s; projects now active on nas2, epoch 1")
	want[failoverKey{"projects", "unreachable"}] = 1
	if got := tally.observe(flood); !maps.Equal(got, want) {
		t.Fatalf("after a flood: want %v, got %v", want, got)
	}
}

func TestFailoverReasonKind(t *testing.T) {
	for detail, want := range map[string]string{
		failoverReason("nas1", 31*time.Second, 30_000_000_000) + "; docs now active on nas2, epoch 1":                                          "unreachable",
		"planned switchover by admin:alice; final snapshot s; docs now active on nas2, epoch 2":                                                "switchover",
		"failback: nas1 caught up; final snapshot s; docs now active on nas1, epoch 3":                                                         "failback",
		"nas2 no longer holds docs (the spec pairs nas1 with nas3): active on its spec appliance nas1 again; docs now active on nas1, epoch 4": "repaired",
		"docs now active on nas1, epoch 5": "other",
	} {
		if got := failoverReasonKind(detail); got != want {
			t.Errorf("%q: want %s, got %s", detail, want, got)
		}
	}
}

func TestCheckMetricsListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:9400", "127.1.2.3:0", "[::1]:9400", "localhost:9400"} {
		if err := CheckMetricsListen(ok); err != nil {
			t.Errorf("%s: want it accepted, got %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:9400", ":9400", "[::]:9400", "10.0.0.1:9400", "nas1.example:9400"} {
		if err := CheckMetricsListen(bad); !errors.Is(err, ErrMetricsNotLoopback) {
			t.Errorf("%s: want ErrMetricsNotLoopback, got %v", bad, err)
		}
	}
	if err := CheckMetricsListen("127.0.0.1"); err == nil || errors.Is(err, ErrMetricsNotLoopback) {
		t.Errorf("no port: want a parse error, got %v", err)
	}
}

func TestRaftNames(t *testing.T) {
	for in, want := range map[string]string{
		"applyBatchNum": "apply_batch_num", "getRPCType": "get_rpc_type", "lastContact": "last_contact",
		"heartbeat_timeout": "heartbeat_timeout", "rpcType": "rpc_type", "oldestLogAge": "oldest_log_age",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q): want %q, got %q", in, want, got)
		}
	}
}

func TestTrailFacts(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	trail := []store.TrailEntry{
		{Side: "send", From: "nas1", Snapshot: "20261129T110000Z", Result: "ok", Start: at.Add(-time.Hour), End: at.Add(-59 * time.Minute), Bytes: 10},
		{Side: "receive", From: "nas1", Snapshot: "20261129T110000Z", Result: "ok"},
		{Side: "drill", From: "nas1", Snapshot: "20261129T115000Z", Result: "ok"},
		{Side: "send", From: "nas1", Snapshot: "20261129T113000Z", Result: "failed", Start: at.Add(-30 * time.Minute), End: at.Add(-29 * time.Minute), Bytes: 5},
	}
	f := trailFacts(trail, "nas1")
	if !f.newestData.Equal(at.Add(-time.Hour)) || !f.lastSuccess.Equal(at.Add(-59*time.Minute)) || f.last == nil || f.last.Result != "failed" || f.last.Bytes != 5 {
		t.Fatalf("want newest data 11:00, last success 11:01, last run failed with 5 bytes; got %+v (last %+v)", f, f.last)
	}
	if f := trailFacts(trail, "nas2"); f.last != nil {
		t.Fatalf("nas2 sent nothing: want no last run, got %+v", f.last)
	}
}
