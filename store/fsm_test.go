package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/schema"
)

const specOne = `version: 1
appliances:
  - name: nas1
    address: 127.0.0.1:7401
    pools: [{name: tank, path: /mnt/tank}]
`

const specTwo = specOne + `shares:
  - name: docs
    appliance: nas1
    pool: tank
`

var (
	appliedAt = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	reportAt  = time.Date(2025, 6, 1, 12, 5, 0, 0, time.UTC)
)

func newTestFSM() *FSM { return NewFSM(slog.New(slog.DiscardHandler)) }

func encode(t *testing.T, typ CommandType, body any) []byte {
	t.Helper()
	data, err := EncodeCommand(typ, body)
	if err != nil {
		t.Fatalf("EncodeCommand(%v): %v", typ, err)
	}
	return data
}

// apply applies one command directly, as Raft would, and returns the result.
func apply(t *testing.T, f *FSM, typ CommandType, body any) any {
	t.Helper()
	return f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: encode(t, typ, body)})
}

func applySpec(t *testing.T, f *FSM, yaml string, expected uint64) (ApplyResult, error) {
	t.Helper()
	resp := apply(t, f, CmdApplySpec, ApplySpec{YAML: []byte(yaml), AppliedBy: "alice", AppliedAt: appliedAt, ExpectedGeneration: expected})
	if err, ok := resp.(error); ok {
		return ApplyResult{}, err
	}
	res, ok := resp.(ApplyResult)
	if !ok {
		t.Fatalf("apply-spec returned %T (%v), want ApplyResult", resp, resp)
	}
	return res, nil
}

func mustApplySpec(t *testing.T, f *FSM, yaml string, expected uint64) ApplyResult {
	t.Helper()
	res, err := applySpec(t, f, yaml, expected)
	if err != nil {
		t.Fatalf("apply-spec: %v", err)
	}
	return res
}

func setStatus(t *testing.T, f *FSM, node string, st NodeStatus) {
	t.Helper()
	if resp := apply(t, f, CmdSetNodeStatus, SetNodeStatus{Node: node, Status: st}); resp != nil {
		t.Fatalf("set-node-status returned %v, want nil", resp)
	}
}

func TestFSMApplySpec(t *testing.T) {
	f := newTestFSM()
	if s := f.State(); s.Generation != 0 || s.Spec != nil || s.YAML != nil {
		t.Fatalf("new FSM: want generation 0 and no spec, got generation %d, spec %v, yaml %q", s.Generation, s.Spec, s.YAML)
	}

	res := mustApplySpec(t, f, specOne, 0)
	if want := (ApplyResult{Generation: 1}); !reflect.DeepEqual(res, want) {
		t.Fatalf("first apply: want %+v, got %+v", want, res)
	}
	s := f.State()
	if s.Generation != 1 || string(s.YAML) != specOne {
		t.Fatalf("after first apply: want generation 1 and the YAML as applied, got %d and %q", s.Generation, s.YAML)
	}
	if s.Spec == nil || s.Spec.Appliance("nas1") == nil || s.Spec.Appliance("nas1").Pool("tank") == nil {
		t.Fatalf("after first apply: want a decoded spec with nas1/tank, got %+v", s.Spec)
	}
	if s.AppliedBy != "alice" || !s.AppliedAt.Equal(appliedAt) {
		t.Fatalf("after first apply: want applied by alice at %v, got %q at %v", appliedAt, s.AppliedBy, s.AppliedAt)
	}

	res = mustApplySpec(t, f, specTwo, 0)
	if res.Generation != 2 || res.Unchanged || string(res.Previous) != specOne {
		t.Fatalf("second apply: want generation 2, changed, previous = first YAML; got %+v", res)
	}
	if s := f.State(); s.Generation != 2 || s.Spec.Share("docs") == nil {
		t.Fatalf("after second apply: want generation 2 with share docs, got generation %d, spec %+v", s.Generation, s.Spec)
	}

	before := f.State()
	res = mustApplySpec(t, f, specTwo, 0)
	if want := (ApplyResult{Generation: 2, Unchanged: true}); !reflect.DeepEqual(res, want) {
		t.Fatalf("identical apply: want %+v, got %+v", want, res)
	}
	if f.State() != before {
		t.Fatalf("identical apply published a new state; want the same one")
	}
}

func TestFSMApplySpecGenerationMismatch(t *testing.T) {
	f := newTestFSM()
	mustApplySpec(t, f, specOne, 0)
	before := f.State()

	_, err := applySpec(t, f, specTwo, 5)
	if !errors.Is(err, ErrGenerationMismatch) {
		t.Fatalf("apply expecting generation 5 at 1: want ErrGenerationMismatch, got %v", err)
	}
	if want := "generation mismatch: expected generation 5, the fleet is at generation 1"; err.Error() != want {
		t.Fatalf("mismatch error: want %q, got %q", want, err)
	}
	if f.State() != before {
		t.Fatalf("a refused apply changed the state")
	}

	if res := mustApplySpec(t, f, specTwo, 1); res.Generation != 2 {
		t.Fatalf("apply expecting the right generation: want generation 2, got %+v", res)
	}
}

// An entry the leader accepted is applied whatever this agent's validation
// says of it: replaying the log must give every agent the same generation,
// even when schema's rules changed between releases. The agent records that
// it cannot read the spec.
func TestFSMApplySpecThisAgentCannotRead(t *testing.T) {
	f := newTestFSM()
	mustApplySpec(t, f, specOne, 0)

	res, err := applySpec(t, f, specOne+"colour: blue\n", 0)
	if err != nil || res.Generation != 2 {
		t.Fatalf("a committed entry must apply: want generation 2, got %+v, %v", res, err)
	}
	st := f.State()
	if st.Spec != nil || !errors.Is(st.SpecErr, ErrInvalidSpec) {
		t.Fatalf("want no decoded spec and SpecErr wrapping ErrInvalidSpec, got %v, %v", st.Spec, st.SpecErr)
	}
	var errs schema.Errors
	if !errors.As(st.SpecErr, &errs) || len(errs) != 1 || errs[0].Path != "colour" || errs[0].File != "fleet.yaml" {
		t.Fatalf("want schema.Errors with one error at fleet.yaml: colour, got %#v", st.SpecErr)
	}
}

func TestFSMStateIsImmutable(t *testing.T) {
	f := newTestFSM()
	mustApplySpec(t, f, specOne, 0)
	setStatus(t, f, "nas1", NodeStatus{ObservedGeneration: 1, ReportedAt: reportAt})
	old := f.State()

	setStatus(t, f, "nas2", NodeStatus{ObservedGeneration: 1, ReportedAt: reportAt})
	setStatus(t, f, "nas1", NodeStatus{ObservedGeneration: 2, ReportedAt: reportAt, Errors: []string{"pool tank is not mounted"}})

	if len(old.Nodes) != 1 || old.Nodes["nas1"].ObservedGeneration != 1 {
		t.Fatalf("a published state changed under its reader: nodes now %+v", old.Nodes)
	}
	s := f.State()
	if len(s.Nodes) != 2 || s.Nodes["nas1"].ObservedGeneration != 2 || len(s.Nodes["nas1"].Errors) != 1 {
		t.Fatalf("want nas1 at 2 with one error and nas2, got %+v", s.Nodes)
	}
	if s.Generation != 1 {
		t.Fatalf("node status changed the spec generation: want 1, got %d", s.Generation)
	}
	if resp := apply(t, f, CmdSetNodeStatus, SetNodeStatus{}); resp == nil {
		t.Fatalf("set-node-status without a node: want an error, got nil")
	}
}

func TestFSMWatch(t *testing.T) {
	f := newTestFSM()
	s, changed := f.Watch()
	if s.Generation != 0 {
		t.Fatalf("Watch on a new FSM: want generation 0, got %d", s.Generation)
	}
	mustApplySpec(t, f, specOne, 0)
	select {
	case <-changed:
	default:
		t.Fatalf("apply did not close the watch channel")
	}

	s, changed = f.Watch()
	if s.Generation != 1 {
		t.Fatalf("Watch after apply: want generation 1, got %d", s.Generation)
	}
	mustApplySpec(t, f, specOne, 0) // identical: nothing changes
	if _, err := applySpec(t, f, specTwo, 7); err == nil {
		t.Fatalf("an apply expecting the wrong generation succeeded")
	}
	select {
	case <-changed:
		t.Fatalf("an apply that changed nothing woke the watchers")
	default:
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	writeErr          error
	closed, cancelled bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string     { return "mem" }
func (s *memSink) Close() error   { s.closed = true; return nil }
func (s *memSink) Cancel() error  { s.cancelled = true; return nil }
func (s *memSink) String() string { return s.Buffer.String() }

// closeCounter notes whether Restore closed its reader.
type closeCounter struct {
	io.Reader
	closed bool
}

func (c *closeCounter) Close() error { c.closed = true; return nil }

// persist snapshots f and returns the bytes Persist wrote.
func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist: want the sink closed, not cancelled; got closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func restore(t *testing.T, f *FSM, data []byte) {
	t.Helper()
	rc := &closeCounter{Reader: bytes.NewReader(data)}
	if err := f.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !rc.closed {
		t.Fatalf("Restore did not close its reader")
	}
}

// sameState fails unless got holds what want holds.
func sameState(t *testing.T, want, got *State) {
	t.Helper()
	if got.Generation != want.Generation || !bytes.Equal(got.YAML, want.YAML) {
		t.Fatalf("want generation %d with YAML %q, got generation %d with %q", want.Generation, want.YAML, got.Generation, got.YAML)
	}
	if !reflect.DeepEqual(got.Spec, want.Spec) {
		t.Fatalf("decoded spec differs:\nwant %+v\ngot  %+v", want.Spec, got.Spec)
	}
	if !got.AppliedAt.Equal(want.AppliedAt) || got.AppliedBy != want.AppliedBy {
		t.Fatalf("want applied by %q at %v, got %q at %v", want.AppliedBy, want.AppliedAt, got.AppliedBy, got.AppliedAt)
	}
	if !reflect.DeepEqual(got.Nodes, want.Nodes) {
		t.Fatalf("node statuses differ:\nwant %+v\ngot  %+v", want.Nodes, got.Nodes)
	}
}

func TestSnapshotRestore(t *testing.T) {
	f := newTestFSM()
	mustApplySpec(t, f, specOne, 0)
	mustApplySpec(t, f, specTwo, 1)
	setStatus(t, f, "nas1", NodeStatus{ObservedGeneration: 2, ReportedAt: reportAt, Errors: []string{"share docs: quota not set"}})

	data := persist(t, f)
	var header struct{ Version int }
	if err := json.Unmarshal(data, &header); err != nil || header.Version != 1 {
		t.Fatalf("snapshot: want JSON with version 1, got version %d (err %v): %s", header.Version, err, data)
	}

	g := newTestFSM()
	_, changed := g.Watch()
	restore(t, g, data)
	sameState(t, f.State(), g.State())
	select {
	case <-changed:
	default:
		t.Fatalf("Restore did not wake the watchers")
	}

	// The restored FSM goes on from there like the original.
	if res := mustApplySpec(t, g, specOne, 2); res.Generation != 3 || string(res.Previous) != specTwo {
		t.Fatalf("apply after restore: want generation 3 replacing the second spec, got %+v", res)
	}
}

func TestSnapshotPersistCancelsOnError(t *testing.T) {
	f := newTestFSM()
	mustApplySpec(t, f, specOne, 0)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{writeErr: errors.New("disk full")}
	if err := snap.Persist(sink); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Persist to a failing sink: want the write error, got %v", err)
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("Persist to a failing sink: want it cancelled, not closed; got cancelled=%v closed=%v", sink.cancelled, sink.closed)
	}
}

func TestRestoreReplacesState(t *testing.T) {
	src := newTestFSM()
	mustApplySpec(t, src, specOne, 0)
	data := persist(t, src)

	dst := newTestFSM()
	mustApplySpec(t, dst, specOne, 0)
	mustApplySpec(t, dst, specTwo, 0)
	setStatus(t, dst, "nas1", NodeStatus{ObservedGeneration: 2, ReportedAt: reportAt})

	restore(t, dst, data)
	s := dst.State()
	sameState(t, src.State(), s)
	if s.Nodes != nil || s.Spec.Share("docs") != nil {
		t.Fatalf("restore merged old state in: nodes %+v, share docs %+v", s.Nodes, s.Spec.Share("docs"))
	}
}

// A snapshot whose spec this agent cannot read is restored all the same
// (the replicated truth is the text and its generation), and says so.
func TestRestoreSpecThisAgentCannotRead(t *testing.T) {
	f := newTestFSM()
	restore(t, f, []byte(`{"version":1,"generation":1,"yaml":"dmVyc2lvbjogWw=="}`)) // "version: ["
	s := f.State()
	if s.Generation != 1 || string(s.YAML) != "version: [" || s.Spec != nil || !errors.Is(s.SpecErr, ErrInvalidSpec) {
		t.Fatalf("want generation 1, the YAML kept, no spec and SpecErr; got %d %q %v %v", s.Generation, s.YAML, s.Spec, s.SpecErr)
	}
}

func TestRestoreRefusesNewerOrForeignSnapshot(t *testing.T) {
	f := newTestFSM()
	mustApplySpec(t, f, specOne, 0)
	before := f.State()
	for _, tc := range []struct{ data, want string }{
		{`{"version":2,"generation":7}`, "upgrade fleetctl"},
		{`{"generation":7}`, "not a fleetctl snapshot"},
	} {
		err := f.Restore(io.NopCloser(strings.NewReader(tc.data)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Restore(%s): want an error saying %q, got %v", tc.data, tc.want, err)
		}
		if f.State() != before {
			t.Fatalf("Restore(%s) failed but changed the state", tc.data)
		}
	}
}

// goldenApplySpecV1 is a CmdApplySpec version 1 entry exactly as fleetctl
// wrote it to the log: specOne (base64), applied by alice at appliedAt. Never
// edit it: agents must apply entries that old releases wrote.
func TestCommandEncoding(t *testing.T) {
	data := encode(t, CmdSetNodeStatus|Ignorable, SetNodeStatus{Node: "nas1"})
	if data[0] != 0x82 || data[1] != 1 || !json.Valid(data[2:]) {
		t.Fatalf("want type 0x82, version 1, then JSON; got % x", data)
	}
	if _, err := EncodeCommand(0x7f, struct{}{}); err == nil {
		t.Fatalf("EncodeCommand of an unknown type: want an error, got nil")
	}
	// The Ignorable bit only says what to do when the command is unknown.
	f := newTestFSM()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
	if _, ok := f.State().Nodes["nas1"]; !ok {
		t.Fatalf("a known command with the Ignorable bit was not applied")
	}
}

func TestCommandUnknownIgnorable(t *testing.T) {
	f := newTestFSM()
	mustApplySpec(t, f, specOne, 0)
	before := f.State()
	for _, data := range [][]byte{
		[]byte("\xff\x01{}"),                        // unknown type 0x7f, ignorable
		[]byte("\x81\x09{\"from\":\"the future\"}"), // apply-spec version 9, ignorable
	} {
		if resp := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data}); resp != nil {
			t.Fatalf("ignorable unknown command % x: want nil, got %v", data[:2], resp)
		}
		if f.State() != before {
			t.Fatalf("ignorable unknown command % x changed the state", data[:2])
		}
	}
}

func TestCommandUnknownPanics(t *testing.T) {
	for _, data := range [][]byte{
		[]byte("\x7f\x01{}"), // unknown type
		[]byte("\x01\x09{}"), // apply-spec, version from the future
	} {
		t.Run(fmt.Sprintf("%x", data[:2]), func(t *testing.T) {
			f := newTestFSM()
			defer func() {
				r := recover()
				if msg := fmt.Sprint(r); !strings.Contains(msg, "this agent is older than the log; upgrade fleetctl") {
					t.Fatalf("want a panic saying to upgrade fleetctl, got %v", r)
				}
				if f.State().Generation != 0 {
					t.Fatalf("the unknown command changed the state")
				}
			}()
			f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: data})
		})
	}
}

// newCluster starts n Raft nodes over in-memory transports, bootstrapped as
// one cluster, each with its own FSM.
func newCluster(t *testing.T, n int) ([]*raft.Raft, []*FSM) {
	t.Helper()
	trans := make([]*raft.InmemTransport, n)
	var servers []raft.Server
	for i := range trans {
		var addr raft.ServerAddress
		addr, trans[i] = raft.NewInmemTransport("")
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("nas%d", i+1)), Address: addr})
	}
	for _, a := range trans {
		for _, b := range trans {
			a.Connect(b.LocalAddr(), b)
		}
	}
	rafts := make([]*raft.Raft, n)
	fsms := make([]*FSM, n)
	for i := range rafts {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 50 * time.Millisecond
		conf.ElectionTimeout = 50 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.LogOutput = io.Discard
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans[i], raft.Configuration{Servers: servers}); err != nil {
			t.Fatalf("bootstrap %s: %v", conf.LocalID, err)
		}
		fsms[i] = newTestFSM()
		r, err := raft.NewRaft(conf, fsms[i], store, store, snaps, trans[i])
		if err != nil {
			t.Fatalf("start %s: %v", conf.LocalID, err)
		}
		rafts[i] = r
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shutdown %s: %v", conf.LocalID, err)
			}
		})
	}
	return rafts, fsms
}

func waitLeader(t *testing.T, rafts []*raft.Raft) (leader, follower *raft.Raft) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for i, r := range rafts {
			if r.State() == raft.Leader {
				return r, rafts[(i+1)%len(rafts)]
			}
		}
	}
	t.Fatalf("no leader elected in 10s")
	return nil, nil
}

// waitFor waits, through Watch, until f's state satisfies ok.
func waitFor(t *testing.T, f *FSM, what string, ok func(*State) bool) *State {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		s, changed := f.Watch()
		if ok(s) {
			return s
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("timed out waiting for %s; state is at generation %d", what, s.Generation)
		}
	}
}

func TestClusterConverges(t *testing.T) {
	rafts, fsms := newCluster(t, 3)
	leader, follower := waitLeader(t, rafts)
	propose := func(r *raft.Raft, typ CommandType, body any) (any, error) {
		return Response(r.Apply(encode(t, typ, body), 5*time.Second))
	}

	resp, err := propose(leader, CmdApplySpec, ApplySpec{YAML: []byte(specOne), AppliedBy: "alice", AppliedAt: appliedAt})
	if err != nil || !reflect.DeepEqual(resp, ApplyResult{Generation: 1}) {
		t.Fatalf("first apply through the leader: want generation 1, got %+v, %v", resp, err)
	}
	resp, err = propose(leader, CmdApplySpec, ApplySpec{YAML: []byte(specTwo), AppliedBy: "bob", AppliedAt: appliedAt.Add(time.Hour), ExpectedGeneration: 1})
	if res, ok := resp.(ApplyResult); err != nil || !ok || res.Generation != 2 || string(res.Previous) != specOne {
		t.Fatalf("second apply through the leader: want generation 2 replacing specOne, got %+v, %v", resp, err)
	}
	if _, err := propose(leader, CmdApplySpec, ApplySpec{YAML: []byte(specOne), ExpectedGeneration: 1}); !errors.Is(err, ErrGenerationMismatch) {
		t.Fatalf("stale compare-and-set through the leader: want ErrGenerationMismatch, got %v", err)
	}
	if _, err := propose(leader, CmdSetNodeStatus, SetNodeStatus{Node: "nas2", Status: NodeStatus{ObservedGeneration: 2, ReportedAt: reportAt}}); err != nil {
		t.Fatalf("set-node-status through the leader: %v", err)
	}
	if _, err := propose(follower, CmdApplySpec, ApplySpec{YAML: []byte(specOne)}); !errors.Is(err, raft.ErrNotLeader) || !strings.HasPrefix(err.Error(), "raft apply: ") {
		t.Fatalf("apply on a follower: want raft apply: %v, got %v", raft.ErrNotLeader, err)
	}

	want := fsms[0].State()
	for i, f := range fsms {
		got := waitFor(t, f, fmt.Sprintf("nas%d to reach generation 2 with nas2's status", i+1), func(s *State) bool {
			return s.Generation == 2 && len(s.Nodes) == 1
		})
		if i == 0 {
			want = got
			continue
		}
		sameState(t, want, got)
	}

	snap := leader.Snapshot()
	if err := snap.Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	meta, rc, err := snap.Open()
	if err != nil {
		t.Fatalf("open snapshot: %v", err)
	}
	if meta.Index == 0 {
		t.Fatalf("snapshot: want a log index, got %+v", meta)
	}
	g := newTestFSM()
	if err := g.Restore(rc); err != nil {
		t.Fatalf("restore the cluster's snapshot: %v", err)
	}
	sameState(t, want, g.State())
}

// A share's trail keeps the newest MaxTrail attempts, oldest first, and an
// append never changes the map a reader already holds.
func TestFSMAppendTrailIsBounded(t *testing.T) {
	f := newTestFSM()
	for i := range MaxTrail + 5 {
		e := TrailEntry{ID: fmt.Sprint(i), Share: "projects", Side: "send", Result: "ok"}
		if resp := apply(t, f, CmdAppendTrail, AppendTrail{Entry: e}); resp != nil {
			t.Fatalf("append-trail returned %v, want nil", resp)
		}
	}
	held := f.State()
	trail := held.Trails["projects"]
	if len(trail) != MaxTrail || trail[0].ID != "5" || trail[MaxTrail-1].ID != fmt.Sprint(MaxTrail+4) {
		t.Fatalf("want the newest %d attempts, 5..%d; got %d from %s to %s", MaxTrail, MaxTrail+4, len(trail), trail[0].ID, trail[len(trail)-1].ID)
	}
	apply(t, f, CmdAppendTrail, AppendTrail{Entry: TrailEntry{ID: "new", Share: "projects"}})
	if held.Trails["projects"][MaxTrail-1].ID != fmt.Sprint(MaxTrail+4) {
		t.Fatalf("an append changed a state a reader held")
	}
	if resp := apply(t, f, CmdAppendTrail, AppendTrail{}); resp == nil {
		t.Fatalf("an entry without a share was accepted")
	}
}

// TestFSMApplySpecTakesDecoded: a spec offered with Decoded for the same
// bytes is the one stored, once; other bytes are parsed; and parsing the
// same bytes again gives an equal spec, so the reuse changes nothing a
// follower or a replay would see.
func TestFSMApplySpecTakesDecoded(t *testing.T) {
	f := newTestFSM()
	offered, err := schema.Parse(specFile, []byte(specTwo))
	if err != nil {
		t.Fatal(err)
	}
	f.Decoded([]byte(specTwo), offered)
	mustApplySpec(t, f, specTwo, 0)
	if got := f.State().Spec; got != offered {
		t.Fatalf("the stored spec is not the one offered for the same bytes")
	}
	replay := newTestFSM()
	mustApplySpec(t, replay, specTwo, 0)
	if !reflect.DeepEqual(replay.State().Spec, offered) {
		t.Fatalf("parsing the same bytes again gave a different spec:\n%+v\n%+v", replay.State().Spec, offered)
	}

	// Offered for other bytes, or already taken: parsed.
	f.Decoded([]byte(specOne), offered)
	mustApplySpec(t, f, specOne+"\n", 0)
	if got := f.State().Spec; got == offered || len(got.Shares) != 0 {
		t.Fatalf("a spec offered for other bytes was stored: %+v", got)
	}
	mustApplySpec(t, f, specTwo, 0)
	if got := f.State().Spec; got == offered {
		t.Fatalf("a spec offered once was stored twice")
	}
}
