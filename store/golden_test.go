package store

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The golden files under testdata/golden are the persisted format exactly
// as fleetctl writes it: log/ holds one entry of every command type and
// version (type byte, version byte, JSON body), in the order a log could
// hold them; snapshot.v1.json is the snapshot of the state they make.
// Never edit or regenerate them: agents must apply what old releases
// wrote. A new command version or snapshot version adds files; a renamed
// JSON tag, a changed type or a changed handler makes these tests fail
// instead of silently changing the format.

// goldenAt is the time every golden entry carries.
var goldenAt = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

// goldenEntries are the log entries in testdata/golden/log with the
// command body each decodes from (the write side: EncodeCommand of the
// body gives the file's bytes).
var goldenEntries = []struct {
	file string
	typ  CommandType
	body any
}{
	{"1-apply-spec.v1", CmdApplySpec, ApplySpec{YAML: []byte(specOne), AppliedBy: "alice", AppliedAt: appliedAt}},
	{"2-set-node-status.v1", CmdSetNodeStatus, SetNodeStatus{Node: "nas1", Status: goldenNodeStatus}},
	{"3-append-trail.v1", CmdAppendTrail, AppendTrail{Entry: goldenTrailEntry}},
	{"4-witness-event.v1", CmdWitnessEvent | Ignorable, goldenWitnessEvent},
	{"5-failover.v1", CmdFailover, FailoverShare{Share: "projects", From: "nas1", To: "nas2", ExpectedEpoch: 0, Reason: "nas1 unreachable for 9s > failover_after 8s", At: goldenAt}},
	{"6-record-cert.v1", CmdRecordCert, goldenCert("aa11", "node", "nas1")},
	{"7-record-cert.v1", CmdRecordCert, goldenCert("bb22", "node", "nas3")},
	{"8-forget-certs.v1", CmdForgetCerts, ForgetCerts{Role: "node", Name: "nas3", By: "admin:alice", Reason: "members remove nas3", At: goldenAt}},
	{"9-join-tokens.v1", CmdJoinTokens, JoinTokenChange{Create: &goldenToken, Revoke: []string{"old"}, At: goldenAt}},
	{"10-prune.v1", CmdPrune, Prune{Shares: []string{"gone"}, Nodes: []string{"nas1"}, At: goldenAt, Reason: "the spec no longer names them"}},
	{"11-set-node-status.v1", CmdSetNodeStatus, SetNodeStatus{Node: "nas2", Status: goldenNodeStatusOrphanFacts}},
	{"12-append-trail.v1", CmdAppendTrail, AppendTrail{Entry: goldenDrillEntry}},
}

// goldenFirstRelease is how many of goldenEntries the first release
// wrote: snapshot.v1.json is their state. snapshot.v1-certs.json is the
// state of the first goldenCertsRelease, with the certificates and tokens
// version 1 gained since; snapshot.v1-orphan-facts.json the state of the
// first goldenOrphanFactsRelease, with NodeStatus.OrphanFacts;
// snapshot.v1-drill.json the state of all of them, with a drill's trail
// entry (TrailEntry.Check, RPO, RTO).
const (
	goldenFirstRelease       = 5
	goldenCertsRelease       = 9
	goldenOrphanFactsRelease = 11
)

func goldenCert(fp, role, name string) CertRecord {
	return CertRecord{Fingerprint: fp, Role: role, Name: name, Serial: "0a" + fp, NotAfter: goldenAt.AddDate(1, 0, 0), IssuedAt: goldenAt, IssuedBy: "admin:local-nas1"}
}

var (
	goldenNodeStatus = NodeStatus{
		ObservedGeneration: 7, ReportedAt: goldenAt, Errors: []string{"pool tank: missing"},
		Shares:  []ShareFacts{{Name: "projects", Pool: "tank", Exists: true, Referenced: 1 << 20, Quota: 2 << 30, Snapshots: 3, Demoted: true, Diverged: 1}},
		Orphans: []string{"scratch"}, Fenced: []string{"projects"},
	}
	// goldenNodeStatusOrphanFacts carries OrphanFacts, added to version 1
	// of set-node-status with omitempty: entries written before it (and
	// goldenNodeStatus) leave it out, byte for byte as they were.
	goldenNodeStatusOrphanFacts = NodeStatus{
		ObservedGeneration: 7, ReportedAt: goldenAt, Converged: true,
		Orphans: []string{"tank/old-vms", "tank/scratch"},
		OrphanFacts: []OrphanFact{
			{Pool: "tank", Name: "old-vms", Referenced: &goldenOrphanBytes, Created: goldenAt.Add(-48 * time.Hour)},
			{Pool: "tank", Name: "scratch"},
		},
	}
	goldenOrphanBytes = uint64(3 << 30)
	goldenTrailEntry  = TrailEntry{
		ID: "t1", Share: "projects", Side: "send", From: "nas1", To: "nas2",
		Start: goldenAt, End: goldenAt.Add(5 * time.Second), Kind: "incremental",
		Parent: "20261101T090000Z", Snapshot: "20261101T100000Z", Bytes: 4096, Result: "ok", Note: "final",
	}
	// goldenDrillEntry is a drill's trail entry: Check, RPO and RTO were
	// added to version 1 of append-trail with omitempty, so entries
	// written before them (goldenTrailEntry) keep their bytes.
	goldenDrillEntry = TrailEntry{
		ID: "d1", Share: "projects", Side: "drill", From: "nas1", To: "nas2",
		Start: goldenAt.Add(time.Minute), End: goldenAt.Add(time.Minute + 3*time.Second),
		Snapshot: "20261101T100000Z", Result: "failed", Error: "check failed: exit status 1",
		Note: "clone .fleetctl/drill/projects.20261101T100100Z", Check: "sha256sum -c /root/projects.sums",
		RPO: time.Minute, RTO: 250 * time.Millisecond,
	}
	goldenToken        = JoinToken{ID: "c0ffee", SecretHash: "5ec2e7", Expires: goldenAt.Add(24 * time.Hour), CreatedAt: goldenAt, CreatedBy: "admin:alice", Description: "nas4"}
	goldenWitnessEvent = WitnessEvent{At: goldenAt, Member: "nas1", Share: "projects", Event: EventFenced, Detail: "nas1 made projects read-only"}
)

// goldenState is the state the first n golden entries replay to, and
// the golden snapshot of them restores to.
func goldenState(n int) *State {
	s := &State{
		Generation: 1,
		YAML:       []byte(specOne),
		AppliedAt:  appliedAt,
		AppliedBy:  "alice",
		Nodes:      map[string]NodeStatus{"nas1": goldenNodeStatus},
		Trails:     map[string][]TrailEntry{"projects": {goldenTrailEntry}},
		Failover: map[string]FailoverState{"projects": {
			Active: "nas2", Epoch: 1, ChangedAt: goldenAt, Reason: "nas1 unreachable for 9s > failover_after 8s",
		}},
		WitnessLog: []WitnessEvent{goldenWitnessEvent, {
			At: goldenAt, Member: "nas1", Share: "projects", Event: EventFailover,
			Detail: "nas1 unreachable for 9s > failover_after 8s; projects now active on nas2, epoch 1",
		}},
	}
	if n > goldenFirstRelease {
		s.Certs = map[string]CertRecord{"aa11": goldenCert("aa11", "node", "nas1")}
		s.Tokens = map[string]JoinToken{"c0ffee": goldenToken}
	}
	if n > goldenCertsRelease {
		s.Nodes = map[string]NodeStatus{}
		s.WitnessLog = append(s.WitnessLog, WitnessEvent{At: goldenAt, Event: EventPruned, Detail: "the spec no longer names them: dropped nas1's last report"})
	}
	if n > goldenCertsRelease+1 {
		s.Nodes["nas2"] = goldenNodeStatusOrphanFacts
	}
	if n > goldenOrphanFactsRelease {
		s.Trails = map[string][]TrailEntry{"projects": {goldenTrailEntry, goldenDrillEntry}}
	}
	return s
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatalf("golden file: %v", err)
	}
	return data
}

// TestGoldenLogCoversEveryCommand fails when a command type or version is
// added without its golden entry.
func TestGoldenLogCoversEveryCommand(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "log", "*"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[commandKey]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) < 2 {
			t.Fatalf("golden entry %s: %v (%d bytes)", f, err, len(data))
		}
		have[commandKey{CommandType(data[0]) &^ Ignorable, data[1]}] = true
	}
	for k := range handlers {
		if !have[k] {
			t.Errorf("%v version %d has no golden entry in testdata/golden/log", k.typ, k.version)
		}
	}
	if len(files) != len(goldenEntries) {
		t.Errorf("testdata/golden/log holds %d entries, goldenEntries names %d", len(files), len(goldenEntries))
	}
}

// TestGoldenLogEncoding: this agent writes every command exactly as the
// golden entry holds it.
func TestGoldenLogEncoding(t *testing.T) {
	for _, g := range goldenEntries {
		want := readGolden(t, filepath.Join("log", g.file))
		got, err := EncodeCommand(g.typ, g.body)
		if err != nil {
			t.Fatalf("%s: %v", g.file, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: this agent writes the command differently from the golden entry:\nwant %q\ngot  %q", g.file, want, got)
		}
	}
}

// TestGoldenLogReplays: the golden log replays to the golden state, with
// the results each command returned then.
func TestGoldenLogReplays(t *testing.T) {
	f := newTestFSM()
	wantResults := map[string]any{
		"1-apply-spec.v1":   ApplyResult{Generation: 1},
		"5-failover.v1":     FailoverResult{Epoch: 1},
		"8-forget-certs.v1": 1,
	}
	for i, g := range goldenEntries {
		resp := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: readGolden(t, filepath.Join("log", g.file))})
		if want := wantResults[g.file]; !reflect.DeepEqual(resp, want) {
			t.Fatalf("%s: want result %#v, got %#v", g.file, want, resp)
		}
		if i+1 == goldenFirstRelease || i+1 == goldenCertsRelease || i+1 == goldenOrphanFactsRelease {
			sameGolden(t, goldenState(i+1), f.State())
		}
	}
	got := f.State()
	if got.Spec == nil || got.Spec.Appliance("nas1") == nil || got.SpecErr != nil {
		t.Fatalf("the golden spec did not decode: %v", got.SpecErr)
	}
	sameGolden(t, goldenState(len(goldenEntries)), got)
	if _, ok := got.Nodes["nas1"]; ok {
		t.Fatalf("prune: want nas1's report dropped, got %+v", got.Nodes)
	}
	if !got.Accepts("node", "nas1", "aa11") || got.Accepts("admin", "nas1", "aa11") || got.Accepts("node", "nas3", "bb22") || got.HasCerts("node", "nas3") {
		t.Fatalf("Accepts: want nas1's recorded certificate alone accepted, got %+v", got.Certs)
	}
}

// TestGoldenSnapshot: each golden snapshot restores to its golden state,
// and this agent writes that state's snapshot byte for byte as it.
func TestGoldenSnapshot(t *testing.T) {
	for file, n := range map[string]int{"snapshot.v1.json": goldenFirstRelease, "snapshot.v1-certs.json": goldenCertsRelease, "snapshot.v1-orphan-facts.json": goldenOrphanFactsRelease, "snapshot.v1-drill.json": len(goldenEntries)} {
		want := readGolden(t, file)
		f := newTestFSM()
		restore(t, f, want)
		sameGolden(t, goldenState(n), f.State())
		if f.State().Spec == nil {
			t.Fatalf("%s: the spec did not decode: %v", file, f.State().SpecErr)
		}
		if got := persist(t, f); !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
			t.Fatalf("%s: this agent writes the golden state's snapshot differently:\nwant %s\ngot  %s", file, want, got)
		}
	}
}

// sameGolden fails unless got holds want (the decoded spec aside: the
// tests check it decoded).
func sameGolden(t *testing.T, want, got *State) {
	t.Helper()
	g := *got
	g.Spec, g.SpecErr = nil, nil
	if !reflect.DeepEqual(&g, want) {
		t.Fatalf("state differs from the golden state:\nwant %+v\ngot  %+v", want, &g)
	}
}
