// Package store is the fleet's replicated state: the raft.FSM every agent
// runs, the State it holds (the fleet spec, what the appliances report,
// replication trails, failover state, the witness log), the commands of the
// Raft log and their encoding (command.go), and the snapshot format.
//
// Everything the log and the snapshots persist is a type of this package,
// so the persisted format changes only here, where the golden tests
// (testdata/golden) catch it. The package imports schema and raft and
// nothing else of fleetctl: the agent (package agent) proposes commands
// and reads State; the reconciler's types are converted at that edge.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/schema"
)

// Errors callers compare with errors.Is.
var (
	// ErrGenerationMismatch: a compare-and-set apply expected a generation
	// the fleet is no longer (or not yet) at. The wrapping error names both.
	ErrGenerationMismatch = errors.New("generation mismatch")
	// ErrInvalidSpec: the spec does not parse or validate. The wrapping error
	// also wraps the schema.Errors, which errors.As reaches. The API refuses
	// such a spec before proposing it; the FSM only records it (State.SpecErr).
	ErrInvalidSpec = errors.New("invalid fleet spec")
	// ErrEpochMismatch: a failover expected an epoch the share is no longer
	// (or not yet) at, because another failover or switchover came first.
	// Nothing changed; the wrapping error names both epochs.
	ErrEpochMismatch = errors.New("epoch mismatch")
)

// State is the fleet's replicated state after some log entry. A published
// State is never modified: Apply builds a new one and swaps it in, sharing
// whatever did not change. Readers may keep and read a *State without locks
// for as long as they like, and must not modify it, its maps or its slices.
type State struct {
	// Generation counts accepted spec applies; 0 before the first.
	Generation uint64
	// YAML is the spec's text exactly as applied; nil before the first apply.
	YAML []byte
	// Spec is YAML decoded by this agent's schema.Parse, defaults applied;
	// nil before the first apply, or when this agent cannot read the stored
	// spec (see SpecErr).
	Spec *schema.Spec
	// SpecErr says why this agent could not decode YAML (wrapping
	// ErrInvalidSpec and the schema.Errors); nil when Spec is set. It is
	// this agent's own verdict, never replicated: an agent older or newer
	// than the one that validated the spec may read it differently.
	SpecErr error
	// AppliedAt is when the proposer accepted the current spec.
	AppliedAt time.Time
	// AppliedBy names who applied the current spec.
	AppliedBy string
	// Nodes is each appliance's last reported status, by appliance name.
	Nodes map[string]NodeStatus
	// Trails is the bounded history of replication attempts, by share name.
	Trails map[string][]TrailEntry
	// Failover is the failover state of each replicated share, by share
	// name. A share without an entry is active on the appliance the spec
	// names, at epoch 0.
	Failover map[string]FailoverState
	// WitnessLog is what the witness saw change (members unreachable and
	// back, degraded and recovered, failovers), oldest first, the newest
	// MaxWitnessLog entries.
	WitnessLog []WitnessEvent
	// Certs are the certificates the fleet accepts, by fingerprint
	// (certs.go).
	Certs map[string]CertRecord
	// Tokens are the join tokens in force, by ID.
	Tokens map[string]JoinToken
}

// NodeStatus is what an appliance last reported about itself: how far its
// reconciler got and the facts of its shares. Agents write it only when it
// changed, so an idle fleet writes nothing.
type NodeStatus struct {
	// ObservedGeneration is the spec generation the node last reconciled.
	ObservedGeneration uint64 `json:"observed_generation"`
	// ReportedAt is when the node made the report (the node's clock).
	ReportedAt time.Time `json:"reported_at"`
	// Errors are the problems the node's last reconcile met, one sentence
	// each.
	Errors []string `json:"errors,omitempty"`
	// Converged is true when the last reconcile left nothing to do.
	Converged bool `json:"converged"`
	// Shares are the facts of the node's shares after its last reconcile.
	Shares []ShareFacts `json:"shares,omitempty"`
	// Orphans are subvolumes on the node's pools that no share names, as
	// pool/name: kept on disk, reported.
	Orphans []string `json:"orphans,omitempty"`
	// Fenced are the shares this appliance is active for and has made
	// read-only itself because its lease with the leader lapsed, sorted.
	Fenced []string `json:"fenced,omitempty"`
	// OrphanFacts are the size and creation time of each of Orphans, in
	// the same order. Added after Orphans (which stays as it was in the
	// log): agents before it leave it out.
	OrphanFacts []OrphanFact `json:"orphan_facts,omitempty"`
}

// OrphanFact is what an appliance reported about one orphaned subvolume.
// It has the fields of reconcile.OrphanFacts, which the agent converts.
type OrphanFact struct {
	Pool string `json:"pool"`
	Name string `json:"name"`
	// Referenced is the bytes the subvolume refers to; nil when unknown
	// (quotas off on the pool).
	Referenced *uint64 `json:"referenced,omitempty"`
	// Created is when the subvolume was created; zero when unknown.
	Created time.Time `json:"created,omitzero"`
}

// ShareFacts is what an appliance reported about one of its shares after a
// reconcile. It has the fields of reconcile.ShareFacts, which the agent
// converts: the log's format is this type's, not the reconciler's.
type ShareFacts struct {
	Name string `json:"name"`
	Pool string `json:"pool"`
	// Exists is whether the share's subvolume is on disk.
	Exists bool `json:"exists"`
	// Referenced is the bytes the share refers to (0 when quotas are off).
	Referenced uint64 `json:"referenced"`
	// Quota is the qgroup limit on disk; 0 for none.
	Quota uint64 `json:"quota"`
	// Snapshots counts the share's snapshots on this appliance.
	Snapshots int `json:"snapshots"`
	// Demoted says another appliance is active for the share: this is the
	// copy it left, kept as it is.
	Demoted bool `json:"demoted,omitempty"`
	// Diverged counts the diverged snapshots kept of the share here.
	Diverged int `json:"diverged,omitempty"`
}

// TrailEntry is one replication attempt as one side recorded it. It has
// the fields of reconcile.TrailEntry, which the agent converts.
type TrailEntry struct {
	// ID is the attempt's ID, made by the sender.
	ID string `json:"id"`
	// Share is the replicated share.
	Share string `json:"share"`
	// Side is "send", "receive", "drill" or "restore".
	Side string `json:"side"`
	// From and To are the sending and receiving appliances.
	From string `json:"from"`
	To   string `json:"to"`
	// Start and End are when the attempt started and ended, by the
	// recording side's clock.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Kind is "full" or "incremental"; "" when the attempt failed before
	// that was decided.
	Kind string `json:"kind,omitempty"`
	// Parent is the stamp name of the parent snapshot of an incremental.
	Parent string `json:"parent,omitempty"`
	// Snapshot is the stamp name of the snapshot sent or received.
	Snapshot string `json:"snapshot,omitempty"`
	// Bytes is the size of the btrfs send stream that passed.
	Bytes int64 `json:"bytes"`
	// Result is "ok", "failed" or "refused".
	Result string `json:"result"`
	// Error says what went wrong, in one line.
	Error string `json:"error,omitempty"`
	// Note says why a send is full, or where an incremental starts from.
	Note string `json:"note,omitempty"`
	// Check is the command a drill ran in its clone; "" when it ran none
	// (and for sends and receives).
	Check string `json:"check,omitempty"`
	// RPO and RTO are a drill's measurements: how old the newest
	// replicated data was when the drill started (its start minus the
	// received snapshot's stamp), and how long from the start until the
	// clone was writable (0 when no clone was made). Added to version 1
	// of append-trail with omitempty: entries without them keep their
	// bytes.
	RPO time.Duration `json:"rpo_ns,omitempty"`
	RTO time.Duration `json:"rto_ns,omitempty"`
}

// Throughput is the attempt's stream bytes per second, 0 when it took no
// time.
func (t TrailEntry) Throughput() float64 {
	d := t.End.Sub(t.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(t.Bytes) / d
}

// MaxTrail is how many attempts the store keeps per share (both sides
// together); older ones are dropped.
const MaxTrail = 100

// FailoverState says which appliance holds a replicated share's writable
// copy. CmdFailover changes it, with a compare-and-set on Epoch.
type FailoverState struct {
	// Active is the appliance whose copy of the share is writable.
	Active string `json:"active"`
	// Epoch rises on every failover or switchover; a receiver refuses a
	// replication stream from a lower one.
	Epoch uint64 `json:"epoch"`
	// ChangedAt is when Active last changed (the proposer's clock).
	ChangedAt time.Time `json:"changed_at"`
	// Reason says why Active last changed, one sentence.
	Reason string `json:"reason,omitempty"`
}

// MaxWitnessLog is how many witness events the store keeps; older ones are
// dropped.
const MaxWitnessLog = 200

// FSM is the fleet's replicated state machine, the raft.FSM every agent
// runs. Raft calls Apply, Snapshot and Restore; everything else in the agent
// reads through State and Watch.
type FSM struct {
	log   *slog.Logger
	state atomic.Pointer[State]

	// mu serializes changes and pairs each published state with the
	// channel Watch hands out for it.
	mu      sync.Mutex
	changed chan struct{} // closed when state is replaced

	// decoded is a spec this agent's schema.Parse already made of YAML
	// (see Decoded); Apply takes it instead of parsing the same bytes again.
	decodedMu sync.Mutex
	decoded   *decodedSpec
}

// decodedSpec is Spec = schema.Parse(specFile, YAML).
type decodedSpec struct {
	YAML []byte
	Spec *schema.Spec
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM with an empty state (generation 0, no spec). log
// receives its warnings; nil means slog.Default().
func NewFSM(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	f := &FSM{log: log, changed: make(chan struct{})}
	f.state.Store(&State{})
	return f
}

// State returns the current state. It never blocks and is never half
// applied; the State is immutable (see State).
func (f *FSM) State() *State {
	return f.state.Load()
}

// Watch returns the current state and a channel that is closed as soon as a
// newer state replaces it. To follow changes, wait on the channel and call
// Watch again: since both come from one call, no change can slip between
// reading the state and starting to wait.
func (f *FSM) Watch() (*State, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Load(), f.changed
}

// Decoded tells the FSM that spec is what schema.Parse made of yaml (with
// the file name "fleet.yaml", as the FSM parses it), so that applying a
// CmdApplySpec with byte-identical YAML takes spec instead of parsing it
// again. The leader calls it with the spec it validated before proposing:
// parsing a 1,000-share spec costs about 30 ms, on the way of every apply.
//
// The outcome does not change: the same bytes through the same parser give
// the same spec, so a follower or a replay that parses gets an equal one.
// The FSM keeps one such spec, the latest offered, and forgets it once it
// is used; spec must not be modified afterwards (the State shares it).
func (f *FSM) Decoded(yaml []byte, spec *schema.Spec) {
	f.decodedMu.Lock()
	defer f.decodedMu.Unlock()
	f.decoded = &decodedSpec{YAML: yaml, Spec: spec}
}

// decodeSpec decodes a stored spec for this agent's use: the one Decoded
// offered for the same bytes, or else schema.Parse's.
func (f *FSM) decodeSpec(yaml []byte) (*schema.Spec, error) {
	f.decodedMu.Lock()
	d := f.decoded
	hit := d != nil && d.Spec != nil && bytes.Equal(d.YAML, yaml)
	if hit {
		f.decoded = nil
	}
	f.decodedMu.Unlock()
	if hit {
		return d.Spec, nil
	}
	return decodeSpec(yaml)
}

// publish makes s the current state and wakes the watchers. f.mu is held.
func (f *FSM) publish(s *State) {
	f.state.Store(s)
	close(f.changed)
	f.changed = make(chan struct{})
}

// Apply applies one committed log entry and returns the command's result, or
// an error the proposer gets from raft.ApplyFuture.Response (use
// applyResponse). It is deterministic: it reads nothing but the entry and the
// current state, never the clock, so every agent reaches the same state.
//
// An entry written by a newer fleetctl than this one makes Apply panic,
// unless its type carries the Ignorable bit: see command.go.
func (f *FSM) Apply(l *raft.Log) any {
	if len(l.Data) < 2 {
		return fmt.Errorf("log entry %d: %d bytes is too short for a command (type, version, body)", l.Index, len(l.Data))
	}
	t, version, body := CommandType(l.Data[0]), l.Data[1], l.Data[2:]
	h, ok := handlers[commandKey{t &^ Ignorable, version}]
	if !ok {
		if t&Ignorable != 0 {
			f.log.Warn("ignoring a command this agent does not know; upgrade fleetctl",
				"index", l.Index, "command", t.String(), "version", version)
			return nil
		}
		msg := fmt.Sprintf("store: log entry %d holds %v version %d, which this agent does not know: this agent is older than the log; upgrade fleetctl",
			l.Index, t, version)
		f.log.Error(msg)
		panic(msg)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next, result := h(f, f.state.Load(), body)
	if next != nil {
		f.publish(next)
	}
	return result
}

// snapshotVersion is the version of the snapshot format Persist writes.
const snapshotVersion = 1

// snapshotV1 is the snapshot format, version 1. The decoded spec is not in
// it: Restore decodes it again from the YAML.
type snapshotV1 struct {
	Version    int                      `json:"version"`
	Generation uint64                   `json:"generation"`
	YAML       []byte                   `json:"yaml,omitempty"`
	AppliedAt  time.Time                `json:"applied_at"`
	AppliedBy  string                   `json:"applied_by,omitempty"`
	Nodes      map[string]NodeStatus    `json:"nodes,omitempty"`
	Trails     map[string][]TrailEntry  `json:"trails,omitempty"`
	Failover   map[string]FailoverState `json:"failover,omitempty"`
	// WitnessLog was added after the first release of version 1; a
	// snapshot without it restores an empty log.
	WitnessLog []WitnessEvent `json:"witness_log,omitempty"`
	// Certs and Tokens were added later still; a snapshot without them
	// restores none.
	Certs  map[string]CertRecord `json:"certs,omitempty"`
	Tokens map[string]JoinToken  `json:"tokens,omitempty"`
}

// Snapshot captures the current state for Raft to persist. It only takes the
// pointer: the state is immutable, so Persist can write it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return fsmSnapshot{f.state.Load()}, nil
}

// fsmSnapshot is one captured State on its way to a snapshot sink.
type fsmSnapshot struct{ s *State }

// Persist writes the state as versioned JSON to sink, and cancels the sink if
// that fails.
func (snap fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	s := snap.s
	err := json.NewEncoder(sink).Encode(snapshotV1{
		Version:    snapshotVersion,
		Generation: s.Generation,
		YAML:       s.YAML,
		AppliedAt:  s.AppliedAt,
		AppliedBy:  s.AppliedBy,
		Nodes:      s.Nodes,
		Trails:     s.Trails,
		Failover:   s.Failover,
		WitnessLog: s.WitnessLog,
		Certs:      s.Certs,
		Tokens:     s.Tokens,
	})
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return nil
}

// Release does nothing: the captured state is garbage collected.
func (fsmSnapshot) Release() {}

// Restore replaces the whole state with the snapshot read from rc, which it
// closes. Nothing of the previous state survives; the spec is decoded afresh
// from the snapshot's YAML.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	var header struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &header); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	switch {
	case header.Version == 0:
		return errors.New("restore snapshot: no format version; not a fleetctl snapshot")
	case header.Version > snapshotVersion:
		return fmt.Errorf("restore snapshot: format version %d is newer than this agent reads (%d): this agent is older than the fleet; upgrade fleetctl",
			header.Version, snapshotVersion)
	}
	var snap snapshotV1
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	s := &State{
		Generation: snap.Generation,
		YAML:       snap.YAML,
		AppliedAt:  snap.AppliedAt,
		AppliedBy:  snap.AppliedBy,
		Nodes:      snap.Nodes,
		Trails:     snap.Trails,
		Failover:   snap.Failover,
		WitnessLog: snap.WitnessLog,
		Certs:      snap.Certs,
		Tokens:     snap.Tokens,
	}
	if snap.Generation > 0 {
		s.Spec, s.SpecErr = decodeSpec(snap.YAML)
		if s.SpecErr != nil {
			f.log.Error("this agent cannot read the stored spec; upgrade fleetctl", "generation", snap.Generation, "err", s.SpecErr)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publish(s)
	return nil
}

// Activation is the entry as the activation the rest of fleetctl reads.
func (fo FailoverState) Activation() schema.Activation {
	return schema.Activation{Appliance: fo.Active, Epoch: fo.Epoch}
}

// Place says where sh's copies are in this state: active where its failover
// entry says, else on its spec appliance (see schema.Share.Place).
func (s *State) Place(sh *schema.Share) (schema.Placement, bool) {
	return sh.Place(s.Failover[sh.Name].Activation())
}
