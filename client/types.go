package client

import (
	"slices"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// Error codes of APIError.
const (
	CodeNoLeader     = "no_leader"
	CodeInvalidSpec  = "invalid_spec"
	CodeConflict     = "generation_mismatch"
	CodeNotFound     = "not_found"
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the caller's identity may not do this (see the
	// agent's access table).
	CodeForbidden = "forbidden"
	// CodeRedirect comes with a 307: ask the member client.HeaderMember
	// names; Client follows it.
	CodeRedirect = "redirect"
	// CodeUnreachable: the member a redirect named did not answer (a
	// leader that just died); Client asks again.
	CodeUnreachable = "unreachable"
	CodeBadRequest  = "bad_request"
	CodeInternal    = "internal"
	// CodeApprovalRequired comes with a 409: the spec would delete, move or
	// shrink what holds data, act at once on the witness policy, rename the
	// fleet or drop every appliance, and the request did not approve it.
	// APIError.Hazards lists what needs approval; nothing was changed.
	CodeApprovalRequired = "approval_required"
)

// APIError is an error the API returns, with a reason fit to print.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Problems lists what is wrong with a refused spec.
	Problems schema.Errors `json:"problems,omitempty"`
	// Hazards lists what a refused apply needed approved
	// (CodeApprovalRequired), and Generation the stored generation they
	// were found against: an approval sent with ExpectedGeneration set to
	// it approves exactly what was shown.
	Hazards    []schema.Hazard `json:"hazards,omitempty"`
	Generation uint64          `json:"generation,omitempty"`
	// Status is the HTTP status it came with (client side only).
	Status int `json:"-"`
}

func (e *APIError) Error() string { return e.Message }

// JoinRequest asks for a node certificate with the join token.
type JoinRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	CSR     string `json:"csr"`
	Token   string `json:"token"`
}

// JoinResponse carries what a new member needs: the CA (certificate and key:
// any voter may become leader and sign the next join), its certificate and
// the fleet's join token.
type JoinResponse struct {
	CACert string `json:"ca_cert"`
	CAKey  string `json:"ca_key"`
	Cert   string `json:"cert"`
	Token  string `json:"token"`
}

// MemberRequest asks the leader to add the calling node to the Raft group.
type MemberRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// MemberResponse says what became of a member.
type MemberResponse struct {
	Name  string `json:"name"`
	Voter bool   `json:"voter"`
	// Warnings say what a forced removal left behind, one sentence each.
	Warnings []string `json:"warnings,omitempty"`
}

// ApplyRequest stores a new spec.
type ApplyRequest struct {
	YAML string `json:"yaml"`
	// ExpectedGeneration, when not zero, makes the apply fail unless the
	// stored generation is this one (compare-and-set).
	ExpectedGeneration uint64 `json:"expected_generation,omitempty"`
	// Approval approves the spec's hazards (schema.Hazards): by name
	// ("approve": ["delete:old-vms"]) or all of them ("approve": ["all"]),
	// and a fleet rename ("rename_fleet") or a file that drops every
	// appliance ("replace_appliances") by their own fields. The leader
	// refuses a spec with an unapproved hazard (CodeApprovalRequired).
	schema.Approval
}

// ApplyResponse says what an apply did.
type ApplyResponse struct {
	Generation uint64 `json:"generation"`
	Unchanged  bool   `json:"unchanged"`
	Previous   string `json:"previous,omitempty"`
	// Changes is what changed in the spec (schema.Diff of the spec
	// replaced and the one stored), worked out by the leader, which holds
	// both decoded, so that the client need not parse Previous. Nil when
	// the leader did not: nothing changed, an agent from before this
	// field, a spec whose diff needs where a share is active
	// (schema.DiffNeedsActive), or a stored spec the leader could not read.
	Changes *schema.Changes `json:"changes,omitempty"`
}

// SpecResponse is the stored spec.
type SpecResponse struct {
	YAML       string    `json:"yaml"`
	Generation uint64    `json:"generation"`
	AppliedAt  time.Time `json:"applied_at"`
	AppliedBy  string    `json:"applied_by"`
}

// PingResponse is one member's own view.
type PingResponse struct {
	Name       string `json:"name"`
	RaftState  string `json:"raft_state"`
	Leader     string `json:"leader"`
	Generation uint64 `json:"generation"`
	AppliedIdx uint64 `json:"applied_index"`
	// LastContactMS is how long ago a follower last heard from the leader;
	// -1 never, 0 for the leader itself.
	LastContactMS int64 `json:"last_contact_ms"`
}

// Health of a member as status reports it.
const (
	HealthHealthy     = "healthy"
	HealthUnreachable = "unreachable"
	HealthNoLeader    = "no-leader-contact"
	HealthBehind      = "behind"
)

// Status is the fleet as one agent sees it.
type Status struct {
	Node       string   `json:"node"`
	Leader     string   `json:"leader"`
	Generation uint64   `json:"generation"`
	Members    []Member `json:"members"`
	// Appliances are the storage appliances of the stored spec with what
	// each last reported, in spec order, as the answering agent's copy of
	// the state at AppliancesGeneration has them.
	Appliances           []ApplianceStatus `json:"appliances"`
	AppliancesGeneration uint64            `json:"appliances_generation"`
	// Shares are the replicated shares of the stored spec with their
	// failover state, in spec order, from the same copy of the state as
	// Appliances.
	Shares []ShareFailover `json:"shares,omitempty"`
	// Warnings are what needs a person soon, one sentence each, like a
	// certificate or the CA expiring within 30 days.
	Warnings []string `json:"warnings,omitempty"`
	// Orphans are the orphaned subvolumes the storage appliances last
	// reported, in spec order of the appliances, from the same copy of the
	// state as Appliances.
	Orphans []Orphan `json:"orphans,omitempty"`
}

// OrphansResponse lists the fleet's orphaned subvolumes as the answering
// agent's copy of the state at Generation has them, at time At.
type OrphansResponse struct {
	Generation uint64    `json:"generation"`
	At         time.Time `json:"at"`
	Orphans    []Orphan  `json:"orphans"`
}

// Orphan is a subvolume at the top of a storage appliance's pool that no
// share of the stored spec names: kept on disk and reported, never deleted
// unless a share marked state: absent names it.
type Orphan struct {
	Appliance string `json:"appliance"`
	Pool      string `json:"pool"`
	// Name is the subvolume's name in the pool.
	Name string `json:"name"`
	// Referenced is the bytes the subvolume refers to; null when unknown
	// (quotas are off on the pool, or the appliance did not report it).
	Referenced *uint64 `json:"referenced"`
	// Created is when the subvolume was created; null when unknown.
	Created *time.Time `json:"created"`
	// Adopt is the item that, pasted under shares: of the stored spec and
	// applied, deletes the subvolume (state: absent); empty when no share
	// can name it, and Note says why.
	Adopt string `json:"adopt,omitempty"`
	Note  string `json:"note,omitempty"`
}

// ShareFailover is the failover state of one replicated share.
type ShareFailover struct {
	Share string `json:"share"`
	// Active is the appliance whose copy is writable; Replica the other.
	Active  string `json:"active"`
	Replica string `json:"replica"`
	// Epoch rises with every failover; 0 until the first.
	Epoch uint64 `json:"epoch"`
	// Failover is the share's failover mode: auto, manual or off.
	Failover schema.Failover `json:"failover"`
	// Fenced is true when an appliance reports the share fenced (made
	// read-only because that appliance's lease lapsed); FencedOn names them.
	Fenced   bool     `json:"fenced"`
	FencedOn []string `json:"fenced_on,omitempty"`
}

// LeaseRequest renews a storage appliance's lease with the leader
// (POST /v1/lease). Only the appliance's own agent may renew it.
type LeaseRequest struct {
	// Appliance is the renewing appliance.
	Appliance string `json:"appliance"`
	// PreviousRTTMillis is the round trip the appliance measured for its
	// previous answered renewal; 0 when it has none yet.
	PreviousRTTMillis float64 `json:"previous_rtt_ms"`
}

// LeaseResponse answers a renewal.
type LeaseResponse struct {
	// Leader is the leader that counted the renewal.
	Leader string `json:"leader"`
	// AppliedIndex is the leader's applied Raft index when it answered. A
	// fenced appliance waits until it has applied as much before it trusts
	// its own copy of the share epochs.
	AppliedIndex uint64 `json:"applied_index"`
	// CheckMillis is how long the leader held the answer for its check
	// that it still leads; the appliance leaves it out of the round trip
	// it measures (the link's latency, for degraded_latency).
	CheckMillis float64 `json:"check_ms,omitempty"`
}

// WitnessStatus is the leader's view of the members' leases and the
// replicated shares (GET /v1/witness/status).
type WitnessStatus struct {
	// Leader is the leader that answered; renewals live in its memory.
	Leader string `json:"leader"`
	// LeaderSince is when it took office (and counted every appliance as
	// renewed).
	LeaderSince time.Time `json:"leader_since"`
	// Policy is the stored spec's witness policy.
	Policy WitnessPolicy `json:"policy"`
	// Members are the appliances of the stored spec, in spec order.
	Members []WitnessMember `json:"members"`
	// Shares are the replicated shares, in spec order.
	Shares []ShareFailover `json:"shares"`
}

// WitnessPolicy is the witness policy in force, in milliseconds.
type WitnessPolicy struct {
	FailoverAfterMS   int64           `json:"failover_after_ms"`
	FenceAfterMS      int64           `json:"fence_after_ms"`
	DegradedLatencyMS int64           `json:"degraded_latency_ms"`
	Failback          schema.Failback `json:"failback"`
}

// WitnessMember is one appliance's health as the leader sees it.
type WitnessMember struct {
	Name string      `json:"name"`
	Role schema.Role `json:"role"`
	// Lease is true for storage appliances, which renew a lease; a witness
	// appliance holds none and is pinged instead.
	Lease bool `json:"lease"`
	// Reachable: renewed within ReachableWindow (a witness appliance:
	// answered a ping).
	Reachable bool `json:"reachable"`
	// LastRenewalMS is how long ago the leader last counted a renewal (its
	// election counts as one); -1 for a witness appliance.
	LastRenewalMS int64 `json:"last_renewal_ms"`
	// RTTMillis is the round trip of the appliance's last measured renewal
	// (a witness appliance: of the ping); 0 when unknown.
	RTTMillis float64 `json:"rtt_ms"`
	// Degraded: RTTMillis is above the policy's degraded_latency.
	Degraded bool `json:"degraded"`
	// Error says why a witness appliance did not answer the ping.
	Error string `json:"error,omitempty"`
}

// ApplianceStatus is a storage appliance's last report.
type ApplianceStatus struct {
	Name string `json:"name"`
	// Reported is false until the appliance's agent has reported once.
	Reported bool `json:"reported"`
	store.NodeStatus
}

// Member is one member of the Raft group.
type Member struct {
	Name          string  `json:"name"`
	Address       string  `json:"address"`
	Voter         bool    `json:"voter"`
	Leader        bool    `json:"leader"`
	Reachable     bool    `json:"reachable"`
	RTTMillis     float64 `json:"rtt_ms"`
	Generation    uint64  `json:"generation"`
	LastContactMS int64   `json:"last_contact_ms"`
	Health        string  `json:"health"`
	Error         string  `json:"error,omitempty"`
}

// PlanRequest asks what the agents would do for a spec.
type PlanRequest struct {
	YAML string `json:"yaml"`
}

// AppliancePlan is the plan one appliance's agent would run for a spec,
// against its btrfs state at the time of asking.
type AppliancePlan struct {
	Appliance string             `json:"appliance"`
	Actions   []reconcile.Action `json:"actions"`
	// Error says why there is no plan: the agent is unreachable, has not
	// joined, or cannot observe its pools.
	Error string `json:"error,omitempty"`
}

// PlanResponse is every storage appliance's plan, in spec order.
type PlanResponse struct {
	Appliances []AppliancePlan `json:"appliances"`
}

// ReplicationShare is one replicated share as `fleetctl replication status`
// shows it.
type ReplicationShare struct {
	Share string `json:"share"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Epoch is the share's failover epoch: 0 until its first failover.
	Epoch uint64 `json:"epoch"`
	// LastSuccess is the end of the newest successful send; zero if none.
	LastSuccess time.Time `json:"last_success"`
	// LastSnapshot is the snapshot that send delivered.
	LastSnapshot string `json:"last_snapshot,omitempty"`
	// LastAttempt is the newest send attempt, whatever its result.
	LastAttempt *store.TrailEntry `json:"last_attempt,omitempty"`
	// NextRun is when the schedule runs next after the last attempt.
	NextRun time.Time `json:"next_run"`
	// Source is the sending agent's own view: running, bytes so far. Nil
	// when the agent did not answer.
	Source *reconcile.ShareReplication `json:"source,omitempty"`
	// SourceError says why the sending agent did not answer.
	SourceError string `json:"source_error,omitempty"`
	// LastDrill is the newest disaster-recovery drill of the share (its
	// trail entry, with RPO and RTO); nil when none is recorded.
	LastDrill *store.TrailEntry `json:"last_drill,omitempty"`
}

// DrillRequest asks for a disaster-recovery drill of Share
// (POST /v1/replication/drill, admins only): on the share's replica, a
// writable clone of the newest received snapshot, Check run in it, the
// clone removed.
type DrillRequest struct {
	Share string `json:"share"`
	// Check is a shell command the replica's agent runs (/bin/sh -c, as
	// the agent's user) with the clone as its working directory and
	// FLEETCTL_DRILL_DIR naming it; "" runs none.
	Check string `json:"check,omitempty"`
	// Timeout bounds Check, like "10m"; "" means 10 minutes, at most 1h.
	Timeout string `json:"timeout,omitempty"`
}

// DrillResponse is what a drill did.
type DrillResponse struct {
	// Entry is the drill's trail entry: result, error, RPO, RTO.
	Entry store.TrailEntry `json:"entry"`
	// Appliance and Pool are where the clone was made (the replica).
	Appliance string `json:"appliance"`
	Pool      string `json:"pool"`
	// Clone is the clone's path in the pool; "" when none was made.
	Clone string `json:"clone,omitempty"`
	// Removed says the clone is gone again.
	Removed bool `json:"removed"`
	// Output is the check's output, stdout and stderr together (its last
	// 64 KiB; Truncated when there was more).
	Output    string `json:"output,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// CheckError says how the check failed; "" when it passed or none ran.
	CheckError string `json:"check_error,omitempty"`
}

// RunResponse says which replication run of a share serves a request
// (POST /v1/replication/run).
type RunResponse struct {
	Share string `json:"share"`
	// Run is the number of the run that serves the request, for
	// /v1/replication/wait: the next run to start, or with now=0 the run
	// going (0 when none is).
	Run uint64 `json:"run"`
	// Running is the run going when the request came, 0 if none. With
	// now, Run starts once it has ended.
	Running uint64 `json:"running"`
}

// RunWaitResponse answers a wait for a run (GET /v1/replication/wait).
type RunWaitResponse struct {
	// Done says the run has ended; Entry is then its trail entry on the
	// sending side.
	Done  bool              `json:"done"`
	Entry *store.TrailEntry `json:"entry,omitempty"`
	// Progress is the sending agent's view while the run is not done.
	Progress *reconcile.ShareReplication `json:"progress,omitempty"`
}

// FailoverRequest asks for a planned switchover of Share to To.
type FailoverRequest struct {
	Share string `json:"share"`
	To    string `json:"to"`
}

// FailoverResponse says what the switchover did.
type FailoverResponse struct {
	Share string `json:"share"`
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"`
	// Snapshot is the final snapshot sent before the switch.
	Snapshot string `json:"snapshot"`
}

// RecordCertRequest asks the fleet to accept an admin certificate a member
// signed with the CA key in its data dir (POST /v1/certs, agents only).
type RecordCertRequest struct {
	CertPEM string `json:"cert_pem"`
}

// CertInfo is a certificate the fleet accepts (GET /v1/certs).
type CertInfo struct {
	Fingerprint string    `json:"fingerprint"`
	Role        string    `json:"role"`
	Name        string    `json:"name"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
	IssuedAt    time.Time `json:"issued_at"`
	IssuedBy    string    `json:"issued_by"`
}

// RevokeRequest takes an admin's certificates back: all of them, or the
// one with Fingerprint (POST /v1/certs/revoke).
type RevokeRequest struct {
	Role        string `json:"role,omitempty"`
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// RevokeResponse says how many certificates were revoked.
type RevokeResponse struct {
	Revoked int `json:"revoked"`
}

// TokenRequest asks for a new join token (POST /v1/tokens).
type TokenRequest struct {
	// TTL is how long it works, like "24h"; the default when empty.
	TTL string `json:"ttl,omitempty"`
	// Description says what it is for.
	Description string `json:"description,omitempty"`
}

// TokenInfo is a join token as the fleet lists it: never its secret.
type TokenInfo struct {
	ID          string    `json:"id"`
	Expires     time.Time `json:"expires"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	Description string    `json:"description,omitempty"`
}

// TokenResponse carries a new join token: the only time it is shown.
type TokenResponse struct {
	Token string    `json:"token"`
	Info  TokenInfo `json:"info"`
}

// RenewRequest asks for a new certificate for the calling agent, for the
// key of the CSR (POST /v1/certs/renew).
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewResponse carries the new certificate.
type RenewResponse struct {
	Cert string `json:"cert"`
}

// SnapshotsResponse is every copy of a share (or of every share) the
// storage appliances hold, sorted by share, time, appliance, pool and
// path, with the appliances that could not answer.
type SnapshotsResponse struct {
	// At is when the agent asked.
	At     time.Time   `json:"at"`
	Copies []ShareCopy `json:"copies"`
	// Errors are the appliances that did not answer, or answered only in
	// part (a pool they cannot read); their copies may be missing.
	Errors []ApplianceError `json:"errors,omitempty"`
}

// ShareCopy is one copy of a share on a storage appliance: a snapshot
// fleetctl keeps (reconcile.ListCopies), where it is and what it holds.
type ShareCopy struct {
	Share string `json:"share"`
	// Kind is scheduled, final, replication, received, diverged,
	// before-epoch or before-restore (reconcile.CopyKind).
	Kind      reconcile.CopyKind `json:"kind"`
	Appliance string             `json:"appliance"`
	Pool      string             `json:"pool"`
	// Path is the copy's absolute path on its appliance, to browse it.
	Path string `json:"path"`
	// Time is when the copy was taken: the stamp in its name, or a
	// before-epoch copy's creation time; null when unknown.
	Time *time.Time `json:"time"`
	// Epoch is a before-epoch copy's epoch.
	Epoch    uint64 `json:"epoch,omitempty"`
	ReadOnly bool   `json:"read_only"`
	// Referenced and Exclusive are bytes; null where the pool has no
	// quotas.
	Referenced *uint64 `json:"referenced"`
	Exclusive  *uint64 `json:"exclusive"`
}

// ApplianceError is what kept an appliance from answering in full.
type ApplianceError struct {
	Appliance string `json:"appliance"`
	Error     string `json:"error"`
}

// LocalSnapshotsResponse is one storage appliance's own copies
// (GET /v1/snapshots/local), with the pools it could not read.
type LocalSnapshotsResponse struct {
	Appliance string      `json:"appliance"`
	Copies    []ShareCopy `json:"copies"`
	Errors    []string    `json:"errors,omitempty"`
}

// DivergedResponse is what the old active of each share wrote after its
// last replication snapshot (GET /v1/diverged): each diverged snapshot
// with its changes against its base, sorted by share, appliance and
// path, with the appliances that could not answer.
type DivergedResponse struct {
	At       time.Time        `json:"at"`
	Diverged []DivergedCopy   `json:"diverged"`
	Errors   []ApplianceError `json:"errors,omitempty"`
}

// DivergedCopy is one diverged snapshot on an appliance and what it
// changed against Base (reconcile.DivergedCopy); Error says why Changes
// could not be computed.
type DivergedCopy struct {
	Share     string `json:"share"`
	Appliance string `json:"appliance"`
	reconcile.DivergedCopy
}

// LocalDivergedResponse is one storage appliance's own diverged
// snapshots (GET /v1/diverged/local).
type LocalDivergedResponse struct {
	Appliance string         `json:"appliance"`
	Diverged  []DivergedCopy `json:"diverged"`
	Errors    []string       `json:"errors,omitempty"`
}

// RestoreRequest asks for a restore from a copy of a share (POST
// /v1/restore, admins only): either Path copied out of the copy to the
// directory To, or the copy as the new writable subvolume As in its pool.
// It runs on the appliance that holds the copy; others redirect there.
type RestoreRequest struct {
	Share string `json:"share"`
	// From names the copy: its path or its name, as fleetctl snapshots
	// prints them.
	From string `json:"from"`
	// Path is relative to the copy ("" or "." is all of it); To is an
	// absolute directory on the holding appliance that does not exist or
	// is empty.
	Path string `json:"path,omitempty"`
	To   string `json:"to,omitempty"`
	// As names the new share.
	As string `json:"as,omitempty"`
	// On names another storage appliance than the copy's for As: the copy
	// is sent there over the replication transport (a full btrfs send)
	// and the new share made in its pool Pool (optional when the
	// appliance has one pool, or the share a pool there).
	On   string `json:"on,omitempty"`
	Pool string `json:"pool,omitempty"`
	// Ticket is what the appliance named by On answered when asked to
	// take the copy; asked again with it, the holder sends the copy.
	Ticket string `json:"ticket,omitempty"`
	// InPlace makes the share itself a writable snapshot of the copy,
	// keeping its current state as a read-only before-restore copy; it
	// runs on the appliance active for the share and needs Approve.
	InPlace bool `json:"in_place,omitempty"`
	// Approve approves an in-place restore: "restore:SHARE" or "all".
	Approve []string `json:"approve,omitempty"`
	// DryRun checks the request and answers with the plan only.
	DryRun bool `json:"dry_run,omitempty"`
}

// InPlaceApproval is the RestoreRequest.Approve item that approves an
// in-place restore of share ("all" approves it too).
func InPlaceApproval(share string) string { return "restore:" + share }

// ApprovesInPlace says whether approve approves an in-place restore of
// share: the agent's rule, which the CLI checks too before it asks.
func ApprovesInPlace(approve []string, share string) bool {
	return slices.Contains(approve, InPlaceApproval(share)) || slices.Contains(approve, "all")
}

// RestoreResponse is a restore's plan and, unless DryRun, what it did.
type RestoreResponse struct {
	// Copy is the copy restored from (its appliance, pool, path).
	Copy   ShareCopy `json:"copy"`
	DryRun bool      `json:"dry_run,omitempty"`
	// Plan says what the restore does (did), one step a line.
	Plan []string `json:"plan"`
	// Copied lists what was copied, relative to To (directories end in
	// '/'); Truncated when the list was cut.
	Copied    []string `json:"copied,omitempty"`
	Truncated bool     `json:"truncated,omitempty"`
	// NewShare is the path of the new subvolume of --as; YAML the item to
	// add under shares: in fleet.yaml for it.
	NewShare string `json:"new_share,omitempty"`
	YAML     string `json:"yaml,omitempty"`
	// Ticket: the appliance named by On is ready to take the copy;
	// repeat the request with it (RestoreRequest.Ticket) to have the
	// holder send it.
	Ticket string `json:"ticket,omitempty"`
	// Bytes is the stream sent by a restore onto another appliance.
	Bytes int64 `json:"bytes,omitempty"`
	// Before is where an in-place restore keeps the share's state from
	// before it (read-only); Share the share's path.
	Before string `json:"before,omitempty"`
	Share  string `json:"share,omitempty"`
	// Follow says how the replica follows an in-place restore of a
	// replicated share: the next run, started at once, and its base.
	Follow string `json:"follow,omitempty"`
	// Run is the number of that replication run on the share's source
	// (0 when none was started): fleetctl replicate SHARE --follow shows it.
	Run uint64 `json:"run,omitempty"`
	// Entry is the restore's trail entry (not for a dry run).
	Entry *store.TrailEntry `json:"entry,omitempty"`
}

// PoolSpace is one pool's space on its appliance (GET /v1/pools): the
// filesystem's size, used and free bytes by statfs, or why not.
type PoolSpace struct {
	Appliance string `json:"appliance"`
	Pool      string `json:"pool"`
	Path      string `json:"path"`
	Size      uint64 `json:"size"`
	Used      uint64 `json:"used"`
	Free      uint64 `json:"free"`
	Error     string `json:"error,omitempty"`
}

// PoolsResponse is every storage appliance's pools and their space (GET
// /v1/pools, each appliance answering for its own: GET /v1/pools/local);
// Errors names the appliances that did not answer.
type PoolsResponse struct {
	Pools  []PoolSpace      `json:"pools"`
	Errors []ApplianceError `json:"errors,omitempty"`
}
