package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/schema"
)

// A command is one entry of the Raft log: a type byte, a version byte, then
// the command's body as JSON.
//
//	+------+---------+----------------------+
//	| type | version | JSON body            |
//	+------+---------+----------------------+
//
// The version is the version of the body's format for that type. The log
// outlives the agent that wrote it, so a newer agent must apply every entry
// an older one wrote exactly as the older one did: handlers (below) maps each
// (type, version) this agent knows to the code that applies it, and an entry
// is never removed from it or changed in meaning. A new body format, or a
// change in what applying a body does, gets a new version.
//
// Validation is not part of applying. The leader validates a spec before
// proposing it; the ApplySpec handler then accepts it whatever this agent's
// schema.Parse says, and only decodes it for local use (State.Spec, or
// State.SpecErr when this agent cannot read it). schema's rules change from
// release to release; if applying depended on them, an agent replaying old
// entries with a newer Parse could reach a different generation than its
// peers. The replicated truth is the text and its generation.
//
// An entry this agent does not know (a type it has never heard of, or a
// version newer than it knows) was written by a newer agent. Applying it
// wrongly or skipping it would make this agent's state silently diverge from
// its peers', so Apply panics, as Consul does, and the agent stops with "this
// agent is older than the log; upgrade fleetctl". A command whose effect an
// older agent may safely miss can be written with the Ignorable bit set in
// its type; an agent that does not know it logs a warning and goes on.

// CommandType says what a command does. Its top bit is the Ignorable flag.
type CommandType uint8

// The commands. Values are written into the log: never reuse or renumber one.
const (
	// CmdApplySpec replaces the fleet spec; its body is ApplySpec and its
	// result ApplyResult.
	CmdApplySpec CommandType = 1
	// CmdSetNodeStatus replaces one node's status; its body is SetNodeStatus
	// and its result nil.
	CmdSetNodeStatus CommandType = 2
	// CmdAppendTrail adds a replication attempt to its share's trail; its
	// body is AppendTrail and its result nil.
	CmdAppendTrail CommandType = 3
	// CmdWitnessEvent adds an entry to the witness log; its body is
	// WitnessEvent and its result nil. The witness writes it with the
	// Ignorable bit: the log only informs, so an older agent may skip it.
	CmdWitnessEvent CommandType = 4
	// CmdFailover makes another appliance active for a replicated share,
	// with a compare-and-set on the share's epoch; its body is FailoverShare
	// and its result FailoverResult, or an error wrapping ErrEpochMismatch.
	CmdFailover CommandType = 5
	// CmdRecordCert adds a certificate to those the fleet accepts; its
	// body is CertRecord and its result nil.
	CmdRecordCert CommandType = 6
	// CmdForgetCerts takes certificates back (revocation); its body is
	// ForgetCerts and its result the number forgotten (int).
	CmdForgetCerts CommandType = 7
	// CmdJoinTokens creates or revokes join tokens; its body is
	// JoinTokenChange and its result nil.
	CmdJoinTokens CommandType = 8
	// CmdPrune drops what the state keeps of shares and appliances the
	// spec no longer names; its body is Prune and its result nil. The
	// leader decides what (agent/prune.go); the command lists it, so
	// applying it never depends on this agent's reading of the spec.
	CmdPrune CommandType = 9

	// Ignorable is the flag bit that tells an agent which does not know a
	// command (its type, or its version) to log and skip it instead of
	// stopping. Set it only on commands that change nothing an older agent
	// relies on.
	Ignorable CommandType = 0x80
)

// String names the command type, as in log messages.
func (t CommandType) String() string {
	var name string
	switch t &^ Ignorable {
	case CmdApplySpec:
		name = "apply-spec"
	case CmdSetNodeStatus:
		name = "set-node-status"
	case CmdAppendTrail:
		name = "append-trail"
	case CmdWitnessEvent:
		name = "witness-event"
	case CmdFailover:
		name = "failover"
	case CmdRecordCert:
		name = "record-cert"
	case CmdForgetCerts:
		name = "forget-certs"
	case CmdJoinTokens:
		name = "join-tokens"
	case CmdPrune:
		name = "prune"
	default:
		name = fmt.Sprintf("command type %d", uint8(t&^Ignorable))
	}
	if t&Ignorable != 0 {
		name += " (ignorable)"
	}
	return name
}

// ApplySpec is the body of CmdApplySpec (version 1): replace the fleet spec.
type ApplySpec struct {
	// YAML is the fleet.yaml text, kept byte for byte (JSON carries it as
	// base64, so any encoding YAML allows survives the trip).
	YAML []byte `json:"yaml"`
	// AppliedBy names who applied it, as the API authenticated them.
	AppliedBy string `json:"applied_by"`
	// AppliedAt is when the proposer accepted the request. Apply must not
	// read the clock, so the time travels in the command.
	AppliedAt time.Time `json:"applied_at"`
	// ExpectedGeneration makes the apply a compare-and-set: it fails with
	// ErrGenerationMismatch unless the fleet is at this generation. 0 means
	// apply whatever the generation is. YAML identical to the stored spec
	// succeeds as Unchanged whatever this says, so a retried apply whose
	// first attempt landed is not reported as a conflict.
	ExpectedGeneration uint64 `json:"expected_generation"`
}

// ApplyResult is what a CmdApplySpec returns through
// raft.ApplyFuture.Response when it succeeds.
type ApplyResult struct {
	// Generation is the fleet's generation after the apply.
	Generation uint64
	// Unchanged is true when the YAML was byte-identical to the stored spec:
	// nothing was written and the generation did not rise.
	Unchanged bool
	// Previous is the YAML the apply replaced; nil when there was none or
	// when nothing changed. It is shared with the old State: do not modify it.
	Previous []byte
}

// AppendTrail is the body of CmdAppendTrail (version 1): add one replication
// attempt to its share's trail, dropping the oldest beyond MaxTrail.
type AppendTrail struct {
	Entry TrailEntry `json:"entry"`
}

// SetNodeStatus is the body of CmdSetNodeStatus (version 1): replace what one
// node last reported about itself.
type SetNodeStatus struct {
	// Node is the reporting appliance's name.
	Node string `json:"node"`
	// Status replaces the node's previous status entirely.
	Status NodeStatus `json:"status"`
}

// WitnessEvent is one entry of the witness log, and the body of
// CmdWitnessEvent (version 1): something the witness saw change.
type WitnessEvent struct {
	// At is when the witness saw it (the leader's clock).
	At time.Time `json:"at"`
	// Member is the appliance the event is about.
	Member string `json:"member"`
	// Share is the share the event is about, if any.
	Share string `json:"share,omitempty"`
	// Event says what happened: one of the Event* constants.
	Event string `json:"event"`
	// Detail explains it in one sentence, with the numbers that decided it.
	Detail string `json:"detail,omitempty"`
}

// The events of the witness log.
const (
	// EventUnreachable: a storage appliance has not renewed its lease for
	// ReachableWindow.
	EventUnreachable = "unreachable"
	// EventReachable: an unreachable appliance renewed its lease again.
	EventReachable = "reachable"
	// EventDegraded: an appliance's lease round trip took longer than the
	// policy's degraded_latency.
	EventDegraded = "degraded"
	// EventRecovered: a degraded appliance's round trip is fast again.
	EventRecovered = "recovered"
	// EventFailover: a failover was committed (CmdFailover writes it).
	EventFailover = "failover"
	// EventFailoverManual: a share with failover: manual lost its active
	// appliance for longer than failover_after; a person must decide.
	EventFailoverManual = "failover needed (manual)"
	// EventFailoverBlocked: a share with failover: auto is due to fail over
	// but its replica appliance is unreachable too; the witness waits.
	EventFailoverBlocked = "failover blocked"
	// EventFenced: an appliance reported that it made a share read-only
	// because its lease lapsed.
	EventFenced = "fenced"
	// EventUnfenced: an appliance no longer reports a share fenced: it made
	// it writable again, or the share moved to another appliance and its
	// copy stays read-only (the detail says which).
	EventUnfenced = "unfenced"
	// EventRestore: an admin restored from a copy of a share (fleetctl
	// restore); the leader writes it when the restore's trail entry
	// comes, so that the witness log shows every restore beside the
	// failovers.
	EventRestore = "restore"
	// EventQuorumRecovered: the fleet was recovered from quorum loss
	// (fleetctl agent --recover) and its new leader forgot what the
	// dropped members held; the detail names the survivors and the
	// dropped.
	EventQuorumRecovered = "recovered from quorum loss"
)

// FailoverShare is the body of CmdFailover (version 1): make To active for
// Share if the share is still at ExpectedEpoch.
type FailoverShare struct {
	// Share is the replicated share.
	Share string `json:"share"`
	// From is the appliance active until now; To the one active after.
	From string `json:"from"`
	To   string `json:"to"`
	// ExpectedEpoch is the share's epoch the proposer decided on: the
	// entry's epoch, 0 when the share has none. Apply refuses with
	// ErrEpochMismatch unless the share is still at it.
	ExpectedEpoch uint64 `json:"expected_epoch"`
	// Reason says why, one sentence, like "nas1 unreachable for 31s >
	// failover_after 30s".
	Reason string `json:"reason"`
	// At is when the proposer decided (Apply must not read the clock).
	At time.Time `json:"at"`
}

// FailoverResult is what a CmdFailover returns through
// raft.ApplyFuture.Response when it succeeds.
type FailoverResult struct {
	// Epoch is the share's new epoch.
	Epoch uint64
}

// commandKey names one version of one command type.
type commandKey struct {
	typ     CommandType // without the Ignorable bit
	version uint8
}

// handler applies one command body to the current state of f. It returns
// the state to publish, or nil when nothing changed, and the value Apply
// returns: a result, nil, or an error. Handlers read nothing of f but what
// cannot change the outcome (FSM.decodeSpec's reuse of a decoded spec).
type handler func(f *FSM, cur *State, body []byte) (next *State, result any)

// handlers is every command this agent can apply. Entries are only ever
// added: see the comment at the top of this file.
var handlers = map[commandKey]handler{
	{CmdApplySpec, 1}:     applySpecV1,
	{CmdSetNodeStatus, 1}: setNodeStatusV1,
	{CmdAppendTrail, 1}:   appendTrailV1,
	{CmdWitnessEvent, 1}:  witnessEventV1,
	{CmdFailover, 1}:      failoverV1,
	{CmdRecordCert, 1}:    recordCertV1,
	{CmdForgetCerts, 1}:   forgetCertsV1,
	{CmdJoinTokens, 1}:    joinTokensV1,
	{CmdPrune, 1}:         pruneV1,
}

// EncodeCommand makes the log entry for a command of type t (which may carry
// the Ignorable bit) with the given body, written in the newest version of
// that type this agent knows.
func EncodeCommand(t CommandType, body any) ([]byte, error) {
	var version uint8
	for k := range handlers {
		if k.typ == t&^Ignorable && k.version > version {
			version = k.version
		}
	}
	if version == 0 {
		return nil, fmt.Errorf("encode command: unknown %v", t)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %v command: %w", t, err)
	}
	return append([]byte{byte(t), version}, data...), nil
}

// specFile is the name spec errors from the replicated store are reported
// against.
const specFile = "fleet.yaml"

func applySpecV1(f *FSM, cur *State, body []byte) (*State, any) {
	var cmd ApplySpec
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdApplySpec, err)
	}
	// Identical text first: a retried apply whose first attempt landed then
	// reports Unchanged, not a generation mismatch.
	if cur.Generation > 0 && bytes.Equal(cmd.YAML, cur.YAML) {
		return nil, ApplyResult{Generation: cur.Generation, Unchanged: true}
	}
	if cmd.ExpectedGeneration != 0 && cmd.ExpectedGeneration != cur.Generation {
		return nil, fmt.Errorf("%w: expected generation %d, the fleet is at generation %d",
			ErrGenerationMismatch, cmd.ExpectedGeneration, cur.Generation)
	}
	// The leader validated the spec before proposing it. Decoding here is
	// for this agent's own use and never decides the outcome (see above).
	spec, specErr := f.decodeSpec(cmd.YAML)
	next := *cur
	next.Generation = cur.Generation + 1
	next.YAML = cmd.YAML
	next.Spec, next.SpecErr = spec, specErr
	next.AppliedAt = cmd.AppliedAt
	next.AppliedBy = cmd.AppliedBy
	return &next, ApplyResult{Generation: next.Generation, Previous: cur.YAML}
}

// decodeSpec decodes a stored spec for this agent's use.
func decodeSpec(yaml []byte) (*schema.Spec, error) {
	spec, err := schema.Parse(specFile, yaml)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return spec, nil
}

func setNodeStatusV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var cmd SetNodeStatus
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdSetNodeStatus, err)
	}
	if cmd.Node == "" {
		return nil, fmt.Errorf("%v: no node named", CmdSetNodeStatus)
	}
	nodes := make(map[string]NodeStatus, len(cur.Nodes)+1)
	maps.Copy(nodes, cur.Nodes)
	nodes[cmd.Node] = cmd.Status
	next := *cur
	next.Nodes = nodes
	return &next, nil
}

// Propose commits one command through r, which must be the leader, and
// returns what the FSM answered: the one place fleetctl writes the log.
// timeout bounds committing it; a leader that cannot reach a quorum steps
// down well within a few seconds, failing the command.
//
// It unwraps the two ways a command fails: Raft did not commit it (wrapped
// in "raft apply: "), or the FSM committed it and refused it (the error the
// handler returned, such as one wrapping ErrGenerationMismatch).
func Propose(r *raft.Raft, t CommandType, body any, timeout time.Duration) (any, error) {
	data, err := EncodeCommand(t, body)
	if err != nil {
		return nil, err
	}
	return Response(r.Apply(data, timeout))
}

// Response waits for a command proposed with raft.Raft.Apply and returns
// what the FSM answered (see Propose).
func Response(f raft.ApplyFuture) (any, error) {
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

func appendTrailV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var cmd AppendTrail
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdAppendTrail, err)
	}
	share := cmd.Entry.Share
	if share == "" {
		return nil, fmt.Errorf("%v: no share named", CmdAppendTrail)
	}
	old := cur.Trails[share]
	start := max(0, len(old)+1-MaxTrail)
	trail := make([]TrailEntry, 0, len(old)-start+1)
	trail = append(append(trail, old[start:]...), cmd.Entry)
	trails := make(map[string][]TrailEntry, len(cur.Trails)+1)
	maps.Copy(trails, cur.Trails)
	trails[share] = trail
	next := *cur
	next.Trails = trails
	return &next, nil
}

func witnessEventV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var e WitnessEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdWitnessEvent, err)
	}
	if e.Event == "" {
		return nil, fmt.Errorf("%v: no event named", CmdWitnessEvent)
	}
	next := *cur
	next.WitnessLog = appendWitnessLog(cur.WitnessLog, e)
	return &next, nil
}

// appendWitnessLog returns a new log with e after old's newest entries,
// MaxWitnessLog at most. old is shared with a published State and is not
// modified.
func appendWitnessLog(old []WitnessEvent, e WitnessEvent) []WitnessEvent {
	start := max(0, len(old)+1-MaxWitnessLog)
	out := make([]WitnessEvent, 0, len(old)-start+1)
	return append(append(out, old[start:]...), e)
}

func failoverV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var cmd FailoverShare
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdFailover, err)
	}
	if cmd.Share == "" || cmd.To == "" {
		return nil, fmt.Errorf("%v: a share and the appliance to make active are needed", CmdFailover)
	}
	// A share without an entry is at epoch 0 (active where the spec says).
	epoch := cur.Failover[cmd.Share].Epoch
	if cmd.ExpectedEpoch != epoch {
		return nil, fmt.Errorf("%w: failover of %s to %s expected epoch %d, the share is at epoch %d",
			ErrEpochMismatch, cmd.Share, cmd.To, cmd.ExpectedEpoch, epoch)
	}
	fo := FailoverState{Active: cmd.To, Epoch: epoch + 1, ChangedAt: cmd.At, Reason: cmd.Reason}
	failover := make(map[string]FailoverState, len(cur.Failover)+1)
	maps.Copy(failover, cur.Failover)
	failover[cmd.Share] = fo
	next := *cur
	next.Failover = failover
	detail := fmt.Sprintf("%s now active on %s, epoch %d", cmd.Share, cmd.To, fo.Epoch)
	if cmd.Reason != "" {
		detail = cmd.Reason + "; " + detail
	}
	next.WitnessLog = appendWitnessLog(cur.WitnessLog, WitnessEvent{At: cmd.At, Member: cmd.From, Share: cmd.Share, Event: EventFailover, Detail: detail})
	return &next, FailoverResult{Epoch: fo.Epoch}
}
