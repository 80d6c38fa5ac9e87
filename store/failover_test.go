package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestFSMFailoverCompareAndSet(t *testing.T) {
	f := newTestFSM()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	res := apply(t, f, CmdFailover, FailoverShare{Share: "projects", From: "nas1", To: "nas2", ExpectedEpoch: 0, Reason: "nas1 unreachable for 31s > failover_after 30s", At: at})
	if res != (FailoverResult{Epoch: 1}) {
		t.Fatalf("first failover: want epoch 1, got %v", res)
	}
	st := f.State()
	if want := (FailoverState{Active: "nas2", Epoch: 1, ChangedAt: at, Reason: "nas1 unreachable for 31s > failover_after 30s"}); st.Failover["projects"] != want {
		t.Fatalf("failover entry: want %+v, got %+v", want, st.Failover["projects"])
	}
	if len(st.WitnessLog) != 1 || st.WitnessLog[0].Detail != "nas1 unreachable for 31s > failover_after 30s; projects now active on nas2, epoch 1" || st.WitnessLog[0].Member != "nas1" {
		t.Fatalf("witness log: want the failover explained, got %+v", st.WitnessLog)
	}
	res = apply(t, f, CmdFailover, FailoverShare{Share: "projects", From: "nas1", To: "nas2", ExpectedEpoch: 0, At: at})
	if err, ok := res.(error); !ok || !errors.Is(err, ErrEpochMismatch) {
		t.Fatalf("failover with a stale epoch: want ErrEpochMismatch, got %v", res)
	}
	if f.State() != st {
		t.Fatalf("a refused failover changed the state")
	}
	if res := apply(t, f, CmdFailover, FailoverShare{Share: "projects", From: "nas2", To: "nas1", ExpectedEpoch: 1, At: at}); res != (FailoverResult{Epoch: 2}) {
		t.Fatalf("failback: want epoch 2, got %v", res)
	}
}

func TestFSMWitnessLogIsBoundedAndSnapshotted(t *testing.T) {
	f := newTestFSM()
	for i := range MaxWitnessLog + 5 {
		if res := apply(t, f, CmdWitnessEvent|Ignorable, WitnessEvent{At: appliedAt, Member: "nas1", Event: EventUnreachable, Detail: fmt.Sprint(i)}); res != nil {
			t.Fatalf("witness event: %v", res)
		}
	}
	l := f.State().WitnessLog
	if len(l) != MaxWitnessLog || l[0].Detail != "5" || l[len(l)-1].Detail != fmt.Sprint(MaxWitnessLog+4) {
		t.Fatalf("witness log: want the newest %d, got %d from %q", MaxWitnessLog, len(l), l[0].Detail)
	}
	apply(t, f, CmdFailover, FailoverShare{Share: "projects", From: "nas1", To: "nas2", At: appliedAt})

	g := newTestFSM()
	restore(t, g, persist(t, f))
	if got, want := g.State(), f.State(); !slices.Equal(got.WitnessLog, want.WitnessLog) || got.Failover["projects"] != want.Failover["projects"] {
		t.Fatalf("restored witness state differs: %+v / %+v", got.Failover, want.Failover)
	}

	// A version 1 snapshot from before the witness restores an empty log.
	h := newTestFSM()
	restore(t, h, []byte(`{"version":1,"generation":0,"applied_at":"0001-01-01T00:00:00Z"}`))
	if st := h.State(); st.WitnessLog != nil || st.Failover != nil {
		t.Fatalf("old snapshot: want no witness log or failovers, got %+v", st)
	}
	if got := (CmdWitnessEvent | Ignorable).String(); got != "witness-event (ignorable)" {
		t.Fatalf("command name: %q", got)
	}
}
