package reconcile

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// Replication follows the Rockstor model. On schedule, the share's source
// appliance (its active appliance: the spec's, or the replica after a
// failover) snapshots the share read-only into its replication directory,
// asks the target (the other appliance) which snapshots it holds, and sends
// the new snapshot with btrfs send: incremental from the newest snapshot
// both sides hold (matched by UUIDs as btrfs receive matches a parent,
// never by name), full when there is none.
// The target receives it (receive.go), verifies it and renames it to its
// final name. Each side records the attempt in the trail. The source keeps
// only the newest snapshot the target holds, the parent of the next
// incremental; the target keeps what the share's retention says, and always
// its newest.

// Errors of replication that callers may test with errors.Is.
var (
	// ErrRefused means a receiver refused a replication: the spec does not
	// name the sender as the share's source or this appliance as its
	// target, or the stream's epoch is older than the share's. A Transport
	// wraps it in the error of a Send the receiver refused.
	ErrRefused = errors.New("replication refused")
	// ErrBusy means a receive of the share is already running on the
	// target; the sender tries again later.
	ErrBusy = errors.New("a receive of this share is already running")
	// ErrRunning means a replication of the share is already running on
	// the source.
	ErrRunning = errors.New("a replication of this share is already running")
	// ErrNoRun means a run someone waits for will not happen: the share
	// stopped being this appliance's to send (a failover, a new spec), or
	// the replicator stopped.
	ErrNoRun = errors.New("the replication run will not happen")
	// ErrNotSource means this appliance does not replicate the share: the
	// share is not in the spec, has no replication, is absent, or another
	// appliance is active for it.
	ErrNotSource = errors.New("this appliance is not the share's replication source")
)

// Trail sides, kinds and results.
const (
	SideSend    = "send"    // the attempt as the source saw it
	SideReceive = "receive" // the attempt as the target saw it

	KindFull        = "full"        // the whole snapshot
	KindIncremental = "incremental" // the changes since the parent

	ResultOK      = "ok"      // the target holds the snapshot
	ResultFailed  = "failed"  // the attempt failed; nothing half-received is left
	ResultRefused = "refused" // the receiver refused the sender
)

// TrailEntry is one replication attempt as one side saw it. Both sides of
// one attempt record an entry with the same ID.
type TrailEntry struct {
	// ID is the attempt's ID, made by the sender.
	ID string `json:"id"`
	// Share is the replicated share.
	Share string `json:"share"`
	// Side is SideSend, SideReceive, SideDrill or SideRestore.
	Side string `json:"side"`
	// From and To are the sending and receiving appliances.
	From string `json:"from"`
	To   string `json:"to"`
	// Start and End are when the attempt started and ended, by the
	// recording side's clock.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Kind is KindFull or KindIncremental; "" when the attempt failed before
	// that was decided.
	Kind string `json:"kind,omitempty"`
	// Parent is the stamp name of the parent snapshot of an incremental.
	Parent string `json:"parent,omitempty"`
	// Snapshot is the stamp name of the snapshot sent or received, like
	// 20261125T084600Z; "" when the attempt failed before it was made.
	Snapshot string `json:"snapshot,omitempty"`
	// Bytes is the size of the btrfs send stream that passed, before any
	// compression on the wire.
	Bytes int64 `json:"bytes"`
	// Result is ResultOK, ResultFailed or ResultRefused.
	Result string `json:"result"`
	// Error says what went wrong, in one line. An ok attempt may carry one
	// too: the snapshot arrived, but pruning old snapshots failed.
	Error string `json:"error,omitempty"`
	// Note says, on the sending side, why a send is full (the target holds
	// nothing in common) or that an incremental starts from a received
	// snapshot (the base a failover promoted from).
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

// SendHeader is what a sender tells the receiver before the stream.
type SendHeader struct {
	// ID is the attempt's ID, for both sides' trails.
	ID string `json:"id"`
	// Share is the replicated share.
	Share string `json:"share"`
	// From is the sending appliance. The receiver trusts only the name in
	// the sender's certificate, and refuses a header that says otherwise.
	From string `json:"from"`
	// Snapshot is the stamp name of the snapshot sent; the stream creates a
	// subvolume of that name.
	Snapshot string `json:"snapshot"`
	// UUID is the sent snapshot's UUID on the source: the received
	// subvolume's received UUID must equal it.
	UUID string `json:"uuid"`
	// Parent is the stamp name of the parent snapshot, "" for a full send.
	Parent string `json:"parent,omitempty"`
	// ParentUUID names the parent as btrfs send does in the stream: its
	// received UUID when it has one (a received snapshot the source was
	// promoted from), else its UUID. The target's copy has it as its
	// received UUID, or as its UUID when the target made the parent itself
	// (its own replication snapshot, from before a failover); "" for a
	// full send.
	ParentUUID string `json:"parent_uuid,omitempty"`
	// Epoch is the share's failover epoch as the sender knows it; a
	// receiver refuses a stream from an older epoch.
	Epoch uint64 `json:"epoch"`
	// Compression is the spec's compression of the stream on the wire: the
	// transport's business, carried here so it knows.
	Compression schema.Compression `json:"compression,omitempty"`
	// BandwidthLimit is the spec's bandwidth_limit in bytes per second, 0
	// for none. The transport holds what it puts on the wire to it, after
	// compression, so that compression buys time on a limited link. The
	// sender's business only: it is not sent.
	BandwidthLimit int64 `json:"-"`
}

// Kind is KindIncremental when the header names a parent, else KindFull.
func (h SendHeader) Kind() string {
	if h.ParentUUID != "" {
		return KindIncremental
	}
	return KindFull
}

// ReceiveResult is what the receiver says of a completed receive.
type ReceiveResult struct {
	// Name is the received snapshot's final name, <share>.<stamp>.
	Name string `json:"name"`
	// ReceivedUUID is its received UUID: the sent snapshot's UUID.
	ReceivedUUID string `json:"received_uuid"`
	// Bytes is the size of the stream received.
	Bytes int64 `json:"bytes"`
}

// Transport carries replications to target appliances. The agent
// implements it over mutual TLS; tests call a Receiver in process.
type Transport interface {
	// Held lists the completed received snapshots of share that the
	// target holds (Receiver.Held there), with their UUIDs and received
	// UUIDs.
	Held(ctx context.Context, target, share string) ([]Subvolume, error)
	// Send streams a btrfs send stream to target, which receives it
	// (Receiver.Receive there, with the sender's authenticated name), and
	// returns the receiver's result. It holds the bytes it sends to
	// h.BandwidthLimit (PaceReader), counted on the wire: after any
	// compression. The stream the target reads must end
	// (io.EOF) exactly where stream does, and fail where stream fails: a
	// receiver accepts a stream only when it ends cleanly right after the
	// btrfs end command. When the receiver refuses, the error wraps
	// ErrRefused. When ctx ends, Send ends the transfer and returns.
	Send(ctx context.Context, target string, h SendHeader, stream io.Reader) (ReceiveResult, error)
}

// Replicator is the sending side of replication. It runs on every storage
// appliance and replicates the shares it is active for: as the spec says,
// the shares that live there; after a failover, the shares it took over.
type Replicator struct {
	// Appliance is this appliance's name in the spec.
	Appliance string
	// Driver speaks to btrfs.
	Driver Driver
	// Transport reaches the targets.
	Transport Transport
	// Trail records an attempt (the agent stores it in the replicated
	// state); nil records nothing. It is called with a context that is not
	// cancelled with the attempt's, so a cancelled attempt is recorded too.
	Trail func(ctx context.Context, e TrailEntry)
	// Active returns which appliance holds the share's writable copy and
	// at which failover epoch; nil means the spec's appliance at epoch 0.
	// This appliance replicates a share it is active for, from the pool of
	// its effective placement to the other appliance of the pair (the
	// spec's appliance and its replication.to), and sends the epoch in
	// every header. It is the one source of the epoch. It is called with
	// the replicator's lock held: it must be quick and must not call the
	// Replicator.
	Active func(share string) schema.Activation
	// Log receives what the replicator does; nil discards it.
	Log *slog.Logger
	// Now is the clock of snapshot stamps, trails and schedules; time.Now
	// when nil. Waiting and the bandwidth limit use the real clock.
	Now func() time.Time

	// retryBase is the first retry delay after a failure; defaultRetryBase
	// when 0. Tests shorten it.
	retryBase time.Duration

	mu     sync.Mutex
	shares map[string]*shareState
	spec   *schema.Spec  // the spec Run saw last
	wake   chan struct{} // wakes Run: a trigger, a run that ended
	active bool          // Run is running
}

// shareState is what the replicator knows of one share's replication.
// Fields are guarded by Replicator.mu, but bytes.
type shareState struct {
	running     bool
	bytes       atomic.Int64 // stream bytes of the running or last attempt
	initialized bool         // lastRun is known
	lastRun     time.Time    // start of the last attempt, for the schedule
	lastAttempt time.Time
	lastResult  string
	lastError   string
	failures    int // consecutive
	retryAt     time.Time
	// triggered asks for one more attempt: the next one started, by
	// whoever starts it, satisfies every request made before it.
	triggered bool

	// Runs of a share are numbered from 1 in the order they start, so a
	// caller can name the run it waits for (Trigger, Current, Wait).
	// started is the number of the running or last started attempt,
	// finished that of the last ended one.
	started, finished uint64
	// results holds the newest ended attempts by number, for Wait.
	results []numberedEntry
	// changed is closed (and replaced) whenever an attempt ends or the
	// share is dropped: waiters wake on it instead of polling.
	changed chan struct{}
	// waiting counts RunNext callers waiting for the running attempt to
	// end; while any wait, Run starts no scheduled attempt of the share,
	// so a waiter cannot be overtaken again and again by the schedule.
	waiting int
	// gone says the share was dropped (no longer this appliance's to
	// send, or Run stopped): runs asked for will not happen.
	gone bool
}

// numberedEntry is an ended attempt with its run number.
type numberedEntry struct {
	run   uint64
	entry TrailEntry
}

// keptResults is how many ended attempts a share keeps for Wait: a
// waiter that looks late still finds the run it asked for.
const keptResults = 8

// begin marks the share running as attempt number started+1, which
// satisfies every trigger made so far. Called with Replicator.mu held.
func (st *shareState) begin() {
	st.running, st.triggered = true, false
	st.started++
	st.bytes.Store(0)
}

// signal wakes everyone waiting on the share's state. Called with
// Replicator.mu held.
func (st *shareState) signal() {
	if st.changed != nil {
		close(st.changed)
	}
	st.changed = make(chan struct{})
}

// watch returns a channel closed at the share's next change. Called with
// Replicator.mu held.
func (st *shareState) watch() <-chan struct{} {
	if st.changed == nil {
		st.changed = make(chan struct{})
	}
	return st.changed
}

// ShareReplication is the state of one share's replication on its source.
type ShareReplication struct {
	// Share is the share's name.
	Share string `json:"share"`
	// Target is where it replicates to, as appliance/pool: the other
	// appliance of the pair, the spec's replication.to until a failover.
	Target string `json:"target"`
	// Epoch is the share's failover epoch, which its streams carry.
	Epoch uint64 `json:"epoch,omitempty"`
	// Schedule is its replication schedule.
	Schedule string `json:"schedule"`
	// Running says an attempt is under way.
	Running bool `json:"running"`
	// Bytes is the stream bytes sent so far by the running attempt, or by
	// the last one.
	Bytes int64 `json:"bytes"`
	// LastAttempt is when the last attempt started; zero when none ran
	// since the agent started.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// LastResult and LastError are the last attempt's Result and Error.
	LastResult string `json:"last_result,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	// Failures counts the failed attempts since the last success.
	Failures int `json:"failures,omitempty"`
	// NextRun is when the next attempt is due; zero while one runs.
	NextRun time.Time `json:"next_run,omitzero"`
	// Queued says an attempt was asked for (replicate --now) and starts
	// as soon as the running one ends.
	Queued bool `json:"queued,omitempty"`
}

const (
	// defaultRetryBase is the first retry delay after a failed attempt;
	// it doubles with each further failure.
	defaultRetryBase = 10 * time.Second
	// maxRetry caps the retry delay, and so does the schedule's interval.
	maxRetry = 10 * time.Minute
	// cleanupTimeout bounds the cleanup after an attempt, which runs even
	// when the attempt's context has ended.
	cleanupTimeout = 2 * time.Minute
	// idleWait is how long Run sleeps when nothing is scheduled.
	idleWait = time.Hour
	// heldAgainTimeout bounds asking the target again after a failure:
	// a target that just failed may well not answer.
	heldAgainTimeout = 30 * time.Second
)

func (r *Replicator) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Replicator) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// replicaSource is a share this appliance replicates, resolved in the spec.
type replicaSource struct {
	share      *schema.Share
	act        schema.Placement
	pool       string // the pool's mount path
	sharePath  string // the share's subvolume
	dir        string // its replication directory
	target     string // the target appliance
	targetPool string // the target's pool name
}

// sourceOf resolves share as one that appliance replicates, being active
// for it as active says.
func sourceOf(spec *schema.Spec, appliance, share string, active func(string) schema.Activation) (replicaSource, error) {
	if spec == nil {
		return replicaSource{}, fmt.Errorf("no spec yet: %w", ErrNotSource)
	}
	sh := spec.Share(share)
	if sh == nil {
		return replicaSource{}, fmt.Errorf("share %q is not in the spec: %w", share, ErrNotSource)
	}
	return sourceOfShare(spec, appliance, sh, active)
}

// sourceOfShare is sourceOf for a share of spec already found.
func sourceOfShare(spec *schema.Spec, appliance string, sh *schema.Share, active func(string) schema.Activation) (replicaSource, error) {
	share := sh.Name
	switch {
	case sh.Replication == nil:
		return replicaSource{}, fmt.Errorf("share %s has no replication in the spec: %w", share, ErrNotSource)
	case sh.State == schema.StateAbsent:
		return replicaSource{}, fmt.Errorf("share %s is marked state: absent: %w", share, ErrNotSource)
	}
	act, ok := placeOf(active, sh)
	switch {
	case act.Active.Appliance != appliance && act.Epoch == 0:
		return replicaSource{}, fmt.Errorf("share %s lives on %s, not on this appliance %s: %w", share, act.Active.Appliance, appliance, ErrNotSource)
	case act.Active.Appliance != appliance:
		return replicaSource{}, fmt.Errorf("share %s is active on %s since epoch %d, not on this appliance %s: %w", share, act.Active.Appliance, act.Epoch, appliance, ErrNotSource)
	}
	if !ok {
		return replicaSource{}, fmt.Errorf("share %s is active on %s, which is neither its appliance %s nor its replica %s: %w", share, appliance, sh.Appliance, sh.Replication.To, ErrNotSource)
	}
	p := SharePool(spec, sh, appliance)
	if p == nil {
		return replicaSource{}, fmt.Errorf("share %s: its pool on %s is not in the spec: %w", share, appliance, ErrNotSource)
	}
	return replicaSource{
		share:      sh,
		act:        act,
		pool:       p.Path,
		sharePath:  filepath.Join(p.Path, sh.Name),
		dir:        filepath.Join(p.Path, ReplicationDir, sh.Name),
		target:     act.Replica.Appliance,
		targetPool: act.Replica.Pool,
	}, nil
}

// RunOnce makes one replication attempt of share, records it in the trail
// and returns it. It snapshots the share read-only into the replication
// directory, sends it to the target (incremental from the newest snapshot
// the target holds, full when it holds none), and prunes the replication
// directory down to the newest snapshot the target holds. progress, when
// not nil, is called with the stream bytes sent so far as they flow.
//
// A failed attempt leaves no snapshot behind that the target does not hold
// (so failures never pile up snapshots) and never deletes the one it does
// hold. When the target cannot be reached, nothing is snapshotted at all.
// A second attempt of the same share while one runs fails at once with
// ErrRunning and is not recorded.
func (r *Replicator) RunOnce(ctx context.Context, spec *schema.Spec, share string, progress func(int64)) TrailEntry {
	st, ok := r.claim(share)
	if !ok {
		now := r.now()
		return TrailEntry{
			Share: share, Side: SideSend, From: r.Appliance, Start: now, End: now, Result: ResultFailed,
			Error: fmt.Sprintf("replicate %s: %v", share, ErrRunning),
		}
	}
	e := r.attempt(ctx, spec, share, st, progress)
	r.release(st, e, retryCap(spec, share, r.now()))
	return e
}

// RunNext makes one replication attempt of share as RunOnce does, but
// when one is running it first waits for that one to end, however long
// it takes, instead of failing with ErrRunning. While it waits, no
// scheduled attempt of the share starts, so the attempt it makes is the
// very next one. It is what a planned switchover's final send uses: the
// share is read-only by then, so any attempt started after the wait
// carries everything written. It fails (a failed entry, not recorded)
// only when ctx ends first.
func (r *Replicator) RunNext(ctx context.Context, spec *schema.Spec, share string, progress func(int64)) TrailEntry {
	r.mu.Lock()
	st, err := r.waitIdleLocked(ctx, share)
	if err != nil {
		r.mu.Unlock()
		now := r.now()
		return TrailEntry{
			Share: share, Side: SideSend, From: r.Appliance, Start: now, End: now, Result: ResultFailed,
			Error: fmt.Sprintf("replicate %s: waiting for the run in progress to end: %v", share, err),
		}
	}
	st.begin()
	r.mu.Unlock()
	e := r.attempt(ctx, spec, share, st, progress)
	r.release(st, e, retryCap(spec, share, r.now()))
	return e
}

// waitIdleLocked waits, with r.mu held (and let go while it waits), until
// no attempt of share runs, holding the schedule back meanwhile, and
// returns the share's state; it fails when ctx ends first.
func (r *Replicator) waitIdleLocked(ctx context.Context, share string) (*shareState, error) {
	st := r.stateLocked(share)
	st.waiting++
	for st.running {
		changed := st.watch()
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			r.mu.Lock()
			st.waiting--
			r.mu.Unlock()
			r.wakeUp() // the schedule may have held back for this wait
			r.mu.Lock()
			return nil, context.Cause(ctx)
		}
		r.mu.Lock()
		// A dropped share's state is replaced in the map: follow it.
		st.waiting--
		st = r.stateLocked(share)
		st.waiting++
	}
	st.waiting--
	return st, nil
}

// Hold waits for an attempt of share in progress to end and keeps the
// next from starting (scheduled, triggered or RunNext) until release is
// called; an attempt asked for meanwhile starts right after. It is for a
// change to the share that no replication run may see half done (an
// in-place restore). It fails, holding nothing, when ctx ends first.
func (r *Replicator) Hold(ctx context.Context, share string) (release func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.waitIdleLocked(ctx, share)
	if err != nil {
		return nil, fmt.Errorf("hold the replication of %s: waiting for the run in progress to end: %w", share, err)
	}
	st.running = true
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			st.running = false
			st.signal()
			r.mu.Unlock()
			r.wakeUp()
		})
	}, nil
}

// Base says what the next attempt of share would send, from what the
// target holds now: incremental from the parent (its stamp name), or full
// (parent ""), with why. It changes nothing.
func (r *Replicator) Base(ctx context.Context, spec *schema.Spec, share string) (parent, why string, err error) {
	src, err := sourceOf(spec, r.Appliance, share, r.Active)
	if err != nil {
		return "", "", err
	}
	held, err := r.Transport.Held(ctx, src.target, share)
	if err != nil {
		return "", "", fmt.Errorf("ask %s which snapshots of %s it holds: %w", src.target, share, err)
	}
	subs, err := r.Driver.Subvolumes(ctx, src.pool)
	if err != nil {
		return "", "", err
	}
	if p := newestCommon(parentCandidates(subs, share), held); p != nil {
		return p.name, fmt.Sprintf("%s holds %s too", src.target, p.name), nil
	}
	if len(held) == 0 {
		return "", fmt.Sprintf("%s holds no snapshot of %s yet", src.target, share), nil
	}
	return "", fmt.Sprintf("none of the %d snapshot%s of %s that %s holds is on this appliance", len(held), plural(len(held)), share, src.target), nil
}

// claim marks share running, unless it already is.
func (r *Replicator) claim(share string) (*shareState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stateLocked(share)
	if st.running {
		return nil, false
	}
	st.begin()
	return st, true
}

// release records the end of an attempt in its share's state, wakes its
// waiters and wakes Run to schedule the next.
func (r *Replicator) release(st *shareState, e TrailEntry, limit time.Duration) {
	r.mu.Lock()
	st.running = false
	st.finished = st.started
	st.results = append(st.results, numberedEntry{run: st.started, entry: e})
	if n := len(st.results); n > keptResults {
		st.results = slices.Delete(st.results, 0, n-keptResults)
	}
	st.signal()
	st.initialized = true
	st.lastRun, st.lastAttempt = e.Start, e.Start
	st.lastResult, st.lastError = e.Result, e.Error
	if e.Result == ResultOK {
		st.failures, st.retryAt = 0, time.Time{}
	} else {
		st.failures++
		st.retryAt = e.End.Add(backoff(r.retryBase, st.failures, limit))
	}
	r.mu.Unlock()
	r.wakeUp()
}

func (r *Replicator) stateLocked(share string) *shareState {
	if r.shares == nil {
		r.shares = map[string]*shareState{}
	}
	st := r.shares[share]
	if st == nil {
		st = &shareState{}
		r.shares[share] = st
	}
	return st
}

func (r *Replicator) wakeChan() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wakeLocked()
}

func (r *Replicator) wakeLocked() chan struct{} {
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	return r.wake
}

func (r *Replicator) wakeUp() {
	select {
	case r.wakeChan() <- struct{}{}:
	default:
	}
}

// attempt makes one attempt of a claimed share and records it.
func (r *Replicator) attempt(ctx context.Context, spec *schema.Spec, share string, st *shareState, progress func(int64)) TrailEntry {
	e := TrailEntry{ID: rand.Text(), Share: share, Side: SideSend, From: r.Appliance, Start: r.now()}
	src, err := sourceOf(spec, r.Appliance, share, r.Active)
	if err != nil {
		// Not this appliance's to replicate: nothing to record.
		e.End, e.Result, e.Error = r.now(), ResultFailed, fmt.Sprintf("replicate %s: %v", share, err)
		return e
	}
	e.To = src.target
	err, pruneErr := r.replicate(ctx, src, &e, st, progress)
	e.End = r.now()
	switch {
	case err != nil:
		e.Result, e.Error = ResultFailed, err.Error()
		if errors.Is(err, ErrRefused) {
			e.Result = ResultRefused
		}
		if pruneErr != nil {
			e.Error += "; and pruning: " + pruneErr.Error()
		}
		r.log().Warn("replication failed", "share", share, "to", e.To, "kind", e.Kind, "snapshot", e.Snapshot, "bytes", e.Bytes, "err", e.Error)
	default:
		e.Result = ResultOK
		if pruneErr != nil {
			e.Error = "replicated, but pruning old replication snapshots failed: " + pruneErr.Error()
		}
		r.log().Info("replicated", "share", share, "to", e.To, "kind", e.Kind, "snapshot", e.Snapshot, "parent", e.Parent,
			"bytes", e.Bytes, "took", e.End.Sub(e.Start).Round(time.Millisecond))
	}
	if r.Trail != nil {
		r.Trail(context.WithoutCancel(ctx), e)
	}
	return e
}

// replicate does the work of an attempt, filling in e as it learns. err is
// why the attempt failed; pruneErr why pruning failed.
func (r *Replicator) replicate(ctx context.Context, src replicaSource, e *TrailEntry, st *shareState, progress func(int64)) (err, pruneErr error) {
	share := src.share.Name
	// Asked first: an unreachable target costs no snapshot.
	held, err := r.Transport.Held(ctx, src.target, share)
	if err != nil {
		return fmt.Errorf("ask %s which snapshots of %s it holds: %w", src.target, share, err), nil
	}
	if err := r.Driver.MkdirAll(ctx, src.dir); err != nil {
		return err, nil
	}
	subs, err := r.Driver.Subvolumes(ctx, src.pool)
	if err != nil {
		return err, nil
	}
	if err := checkSourceShare(subs, src); err != nil {
		return err, nil
	}
	cands := parentCandidates(subs, share)
	parent := newestCommon(cands, held)
	stamp := nextStamp(e.Start, cands)
	name := stamp.Format(StampFormat)
	path := filepath.Join(src.dir, name)
	e.Snapshot, e.Kind = name, KindFull
	var parentPath string
	switch {
	case parent != nil:
		e.Kind, e.Parent = KindIncremental, parent.name
		parentPath = candidatePath(src, parent)
		if parent.received {
			e.Note = fmt.Sprintf("incremental from the received snapshot %s.%s (the base since the failover), which %s holds as %s", share, parent.name, src.target, sendUUID(parent.sv))
		}
	case len(held) == 0:
		e.Note = fmt.Sprintf("full: %s holds no snapshot of %s yet", src.target, share)
	default:
		e.Note = fmt.Sprintf("full: none of the %d snapshot%s of %s that %s holds is on this appliance, so there is no parent for an incremental", len(held), plural(len(held)), share, src.target)
	}

	// From here on, whatever happens, the directory is pruned to what the
	// target holds, with a context that outlives a cancelled attempt.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	keepParent := map[string]bool{}
	if parent != nil && !parent.received {
		keepParent[parent.name] = true
	}

	if err := r.Driver.Snapshot(ctx, src.sharePath, path, true); err != nil {
		return err, r.prune(cleanup, src, keepParent)
	}
	uuid, err := r.snapshotUUID(ctx, src, name)
	if err != nil {
		return err, r.prune(cleanup, src, keepParent)
	}
	h := SendHeader{
		ID: e.ID, Share: share, From: r.Appliance,
		Snapshot: name, UUID: uuid, Epoch: src.act.Epoch,
		Compression:    src.share.Replication.Compression,
		BandwidthLimit: int64(src.share.Replication.BandwidthLimit),
	}
	if parent != nil {
		h.Parent, h.ParentUUID = parent.name, sendUUID(parent.sv)
	}

	res, complete, err := r.stream(ctx, src, h, path, parentPath, st, progress)
	e.Bytes = st.bytes.Load()
	if err == nil && res.ReceivedUUID != "" && res.ReceivedUUID != uuid {
		err = fmt.Errorf("%s received %s with received UUID %s, but the snapshot sent has UUID %s", src.target, res.Name, res.ReceivedUUID, uuid)
	}
	if err == nil {
		return nil, r.prune(cleanup, src, map[string]bool{name: true})
	}
	return err, r.prune(cleanup, src, r.heldAfterFailure(ctx, src, parent, name, complete))
}

// heldAfterFailure decides which replication snapshots to keep after a
// failed send: the newest the target holds, asked again, since a receive
// may have completed although its answer was lost. When the target cannot
// say, the parent, and the new snapshot too when its whole stream went out.
// A received snapshot as the common one keeps none: prune never touches
// received snapshots.
func (r *Replicator) heldAfterFailure(ctx context.Context, src replicaSource, parent *sourceSnap, name string, complete bool) map[string]bool {
	if ctx.Err() == nil {
		hctx, cancel := context.WithTimeout(ctx, heldAgainTimeout)
		defer cancel()
		if held, err := r.Transport.Held(hctx, src.target, src.share.Name); err == nil {
			if subs, err := r.Driver.Subvolumes(ctx, src.pool); err == nil {
				if common := newestCommon(parentCandidates(subs, src.share.Name), held); common != nil && !common.received {
					return map[string]bool{common.name: true}
				}
				return map[string]bool{}
			}
		}
	}
	keep := map[string]bool{}
	if parent != nil && !parent.received {
		keep[parent.name] = true
	}
	if complete {
		keep[name] = true
	}
	return keep
}

// stream runs btrfs send into the transport. complete says btrfs send wrote
// the whole stream (the receiver may hold the snapshot even when err says
// the attempt failed).
//
// btrfs send writes into an OS pipe that the transport reads, so the
// stream passes through this process once, with no copy of its own.
func (r *Replicator) stream(ctx context.Context, src replicaSource, h SendHeader, snapshot, parent string, st *shareState, progress func(int64)) (res ReceiveResult, complete bool, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return res, false, fmt.Errorf("send %s: %w", snapshot, err)
	}
	growPipe(pw)
	sent := make(chan error, 1)
	go func() {
		err := r.Driver.Send(ctx, snapshot, parent, pw)
		pw.Close() // the reader sees the end once btrfs send's copy is closed too
		sent <- err
	}()
	sr := &sendReader{f: pr, sent: sent, count: func(n int64) {
		st.bytes.Store(n)
		if progress != nil {
			progress(n)
		}
	}}
	res, terr := r.Transport.Send(ctx, src.target, h, sr)
	abandoned, serr := sr.abandon()
	switch {
	case terr == nil && serr == nil:
		return res, true, nil
	case serr != nil && !abandoned:
		if terr != nil {
			return res, false, fmt.Errorf("%w; and %s: %w", serr, src.target, terr)
		}
		return res, false, serr
	case terr != nil:
		return res, serr == nil, fmt.Errorf("%s: %w", src.target, terr)
	default:
		return res, false, fmt.Errorf("%s answered before it read the whole stream (%w)", src.target, serr)
	}
}

// sendReader reads btrfs send's stream from the pipe f and counts it. At
// the end of the pipe it waits for btrfs send's result, so a failed send
// reaches the transport as a read error, not as a clean end.
type sendReader struct {
	f     *os.File
	sent  <-chan error
	count func(n int64)
	n     int64 // read so far; only the transport's reader touches it

	mu   sync.Mutex
	done bool  // err is btrfs send's result
	err  error // btrfs send's error
}

func (s *sendReader) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	if n > 0 {
		s.n += int64(n)
		s.count(s.n)
	}
	if err == io.EOF {
		if serr := s.result(); serr != nil {
			return n, serr
		}
	}
	return n, err
}

// result waits for btrfs send's result.
func (s *sendReader) result() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.err, s.done = <-s.sent, true
	}
	return s.err
}

// abandon closes the pipe, which stops btrfs send if it still writes, and
// returns its result. abandoned says btrfs send had not ended on its own
// by then, so its error is only the consequence.
func (s *sendReader) abandon() (abandoned bool, err error) {
	s.mu.Lock()
	select {
	case s.err = <-s.sent:
		s.done = true
	default:
	}
	abandoned = !s.done
	s.mu.Unlock()
	s.f.Close()
	return abandoned, s.result()
}

// sourceSnap is one replication snapshot on the source, or, as a parent
// candidate, one of its completed received snapshots.
type sourceSnap struct {
	name     string    // its stamp
	time     time.Time // the stamp's time
	sv       Subvolume
	received bool // a received snapshot, <share>.<name> in the received directory
}

// sourceSnapshots lists the share's replication snapshots, oldest first.
// Only read-only subvolumes named by a stamp count.
func (r *Replicator) sourceSnapshots(ctx context.Context, src replicaSource) ([]sourceSnap, error) {
	subs, err := r.Driver.Subvolumes(ctx, src.pool)
	if err != nil {
		return nil, err
	}
	return replicationSnapshots(subs, src.share.Name), nil
}

func replicationSnapshots(subs []Subvolume, share string) []sourceSnap {
	prefix := ReplicationDir + "/" + share + "/"
	var out []sourceSnap
	for _, sv := range subs {
		name, ok := strings.CutPrefix(sv.Path, prefix)
		if !ok || strings.Contains(name, "/") || !sv.ReadOnly {
			continue
		}
		if t, ok := parseStamp(name); ok {
			out = append(out, sourceSnap{name: name, time: t, sv: sv})
		}
	}
	slices.SortFunc(out, func(a, b sourceSnap) int { return a.time.Compare(b.time) })
	return out
}

// snapshotUUID reads the UUID of the share's new replication snapshot.
func (r *Replicator) snapshotUUID(ctx context.Context, src replicaSource, name string) (string, error) {
	snaps, err := r.sourceSnapshots(ctx, src)
	if err != nil {
		return "", err
	}
	for _, s := range snaps {
		if s.name == name && s.sv.UUID != "" {
			return s.sv.UUID, nil
		}
	}
	return "", fmt.Errorf("snapshot %s: not listed as a read-only subvolume after it was made", filepath.Join(src.dir, name))
}

// parentCandidates lists the snapshots of the share on the source's pool
// that can be an incremental's parent, oldest first: its replication
// snapshots and its completed received snapshots (this appliance received
// them while the other one was active; the share may have been promoted
// from the newest). On equal stamps a replication snapshot comes last.
func parentCandidates(subs []Subvolume, share string) []sourceSnap {
	out := replicationSnapshots(subs, share)
	for _, s := range receivedSnapshots(subs, share) {
		if s.complete() {
			out = append(out, sourceSnap{name: s.time.UTC().Format(StampFormat), time: s.time, sv: s.sv, received: true})
		}
	}
	slices.SortStableFunc(out, func(a, b sourceSnap) int {
		if c := a.time.Compare(b.time); c != 0 {
			return c
		}
		switch {
		case a.received == b.received:
			return 0
		case a.received:
			return -1
		}
		return 1
	})
	return out
}

// candidatePath is the absolute path of a parent candidate.
func candidatePath(src replicaSource, c *sourceSnap) string {
	if c.received {
		return filepath.Join(src.pool, ReceivedDir, src.share.Name, src.share.Name+"."+c.name)
	}
	return filepath.Join(src.dir, c.name)
}

// sendUUID is the UUID by which btrfs send names a subvolume in a stream,
// as the sent subvolume or as the parent of an incremental: its received
// UUID when it has one, else its UUID (the kernel's send.c). btrfs receive
// looks a parent up by that UUID among received UUIDs first, then among
// UUIDs.
func sendUUID(sv Subvolume) string {
	if sv.ReceivedUUID != "" {
		return sv.ReceivedUUID
	}
	return sv.UUID
}

// holds says whether a snapshot the target holds is the subvolume btrfs
// receive finds for the send UUID id: a copy received from it (received
// UUID), or the subvolume itself (UUID).
func holds(held []Subvolume, id string) bool {
	if id == "" {
		return false
	}
	for _, h := range held {
		if h.ReceivedUUID == id || h.UUID == id {
			return true
		}
	}
	return false
}

// newestCommon is the newest parent candidate the target holds (see
// holds): the parent for an incremental send, or nil.
func newestCommon(cands []sourceSnap, held []Subvolume) *sourceSnap {
	for i := len(cands) - 1; i >= 0; i-- {
		if holds(held, sendUUID(cands[i].sv)) {
			return &cands[i]
		}
	}
	return nil
}

// checkSourceShare checks, in the pool's subvolumes, that the share to be
// snapshotted exists and is not a copy left from before this appliance
// was demoted (older than its newest received snapshot): replicating that
// would send stale data over the other appliance's newer copy.
func checkSourceShare(subs []Subvolume, src replicaSource) error {
	name := src.share.Name
	var share *Subvolume
	for i := range subs {
		if subs[i].Path == name {
			share = &subs[i]
		}
	}
	if share == nil {
		return fmt.Errorf("share %s has no subvolume %s on %s (a promotion after failover may not have run yet)", name, src.sharePath, src.act.Active.Appliance)
	}
	var newest *receivedSnap
	for _, s := range receivedSnapshots(subs, name) {
		if s.complete() && (newest == nil || s.time.After(newest.time)) {
			newest = &s
		}
	}
	if olderThanReceived(*share, newest) {
		return fmt.Errorf("share %s: %s is older than the received snapshot %s, so it is the copy left from before this appliance was demoted; it is not replicated until the received snapshot is promoted in its place",
			name, src.sharePath, filepath.Join(src.pool, newest.sv.Path))
	}
	return nil
}

// nextStamp is the stamp of a snapshot taken at now: now to the second,
// but always after the newest existing one, so stamps order snapshots as
// they were made even when two runs share a second or the clock went back.
func nextStamp(now time.Time, snaps []sourceSnap) time.Time {
	t := now.UTC().Truncate(time.Second)
	if n := len(snaps); n > 0 && !t.After(snaps[n-1].time) {
		t = snaps[n-1].time.Add(time.Second)
	}
	return t
}

// prune deletes the share's replication snapshots but those in keep and
// the bases of the share's diverged snapshots on the pool (what fleetctl
// diverged compares them with: the data both appliances held). It runs
// after every attempt, so one snapshot (the parent of the next
// incremental) stays between runs, and one for each diverged snapshot.
func (r *Replicator) prune(ctx context.Context, src replicaSource, keep map[string]bool) error {
	subs, err := r.Driver.Subvolumes(ctx, src.pool)
	if err != nil {
		return err
	}
	bases := divergedBases(src.share.Name, subs)
	var errs []error
	for _, s := range replicationSnapshots(subs, src.share.Name) {
		if keep[s.name] || bases[s.sv.Path] {
			continue
		}
		if err := r.Driver.DeleteSubvolume(ctx, filepath.Join(src.dir, s.name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// divergedBases is the set of paths (relative to the pool) of the
// replication snapshots that are the base of one of share's diverged
// snapshots among subs (DivergedBase).
func divergedBases(share string, subs []Subvolume) map[string]bool {
	out := map[string]bool{}
	for _, sv := range subs {
		if name, ok := ClassifyCopy(sv.Path); ok && name.Kind == CopyDiverged && name.Share == share {
			if base, ok := DivergedBase(share, sv, subs); ok {
				out[base.Path] = true
			}
		}
	}
	return out
}

// parseStamp parses a stamp in StampFormat exactly, like 20261125T084600Z.
//
// It reads the fixed layout by hand: time.Parse, and the Format that
// checked the result was the canonical name, were a third of Plan's CPU
// time with 1,000 shares of 24 snapshots each (BenchmarkPlan1000Shares).
// A date that does not exist (20261131) is refused, as the round trip
// through Format refused it.
func parseStamp(s string) (time.Time, bool) {
	// 20060102T150405Z
	if len(s) != len(StampFormat) || s[8] != 'T' || s[15] != 'Z' {
		return time.Time{}, false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var f [6]int
	for i, r := range [6][2]int{{0, 4}, {4, 6}, {6, 8}, {9, 11}, {11, 13}, {13, 15}} {
		var ok bool
		if f[i], ok = num(r[0], r[1]); !ok {
			return time.Time{}, false
		}
	}
	t := time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], 0, time.UTC)
	if t.Year() != f[0] || int(t.Month()) != f[1] || t.Day() != f[2] || t.Hour() != f[3] || t.Minute() != f[4] || t.Second() != f[5] {
		return time.Time{}, false // normalized: no such date or time
	}
	return t, true
}

// backoff is the delay before retry number failures: base (10s when 0),
// doubling, at most limit.
func backoff(base time.Duration, failures int, limit time.Duration) time.Duration {
	if base <= 0 {
		base = defaultRetryBase
	}
	d := base
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// retryCap is the longest retry delay of share: its schedule's interval
// (for a cron line, the gap between its next two times), at most maxRetry.
func retryCap(spec *schema.Spec, share string, now time.Time) time.Duration {
	if spec == nil {
		return maxRetry
	}
	sh := spec.Share(share)
	if sh == nil || sh.Replication == nil {
		return maxRetry
	}
	return min(interval(sh.Replication.Schedule, now), maxRetry)
}

// interval is how often a schedule fires: an "every" schedule's interval,
// or the gap between a cron line's next two times; maxRetry when it never
// fires.
func interval(s schema.Schedule, now time.Time) time.Duration {
	if d := s.Interval(); d > 0 {
		return d
	}
	n1 := s.Next(now)
	if n1.IsZero() {
		return maxRetry
	}
	n2 := s.Next(n1)
	if n2.IsZero() {
		return maxRetry
	}
	return n2.Sub(n1)
}

// Run replicates every share of this appliance that has replication, on
// its schedule, until ctx ends, and then waits for the attempts under way.
// watch is as Loop.Watch: the current spec, its generation, and a channel
// closed when either changes.
//
// A share runs when its schedule has fired since its last attempt (a
// missed tick runs once, however many were missed), or at once when it has
// never run. At start, a share's last attempt is taken to be its newest
// replication snapshot's stamp, so a restart keeps the schedule. After a
// failure the share is retried after 10s, doubling with each further
// failure up to its schedule's interval or 10m, whichever is shorter.
// Trigger runs one now. A share never has two attempts at once; shares run
// in parallel.
func (r *Replicator) Run(ctx context.Context, watch func() (*schema.Spec, uint64, <-chan struct{})) {
	wake := r.wakeChan()
	r.mu.Lock()
	r.active = true
	r.mu.Unlock()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		r.mu.Lock()
		r.active = false
		// Triggered runs will not happen now: wake their waiters.
		for name, st := range r.shares {
			if !st.running {
				r.dropLocked(name, st)
			}
		}
		r.mu.Unlock()
	}()
	for {
		spec, _, changed := watch()
		wait := r.schedule(ctx, spec, &wg)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// schedule starts the attempts that are due and returns how long until the
// next one is.
func (r *Replicator) schedule(ctx context.Context, spec *schema.Spec, wg *sync.WaitGroup) time.Duration {
	sources := r.sources(spec)
	// A share seen for the first time last ran when its newest replication
	// snapshot was taken. Learned outside the lock: it runs btrfs.
	r.mu.Lock()
	r.spec = spec
	var unknown []replicaSource
	for _, src := range sources {
		if st := r.shares[src.share.Name]; st == nil || !st.initialized {
			unknown = append(unknown, src)
		}
	}
	r.mu.Unlock()
	lastRun := map[string]time.Time{}
	for _, src := range unknown {
		snaps, err := r.sourceSnapshots(ctx, src)
		if err != nil {
			r.log().Warn("cannot tell when share last replicated; replicating now", "share", src.share.Name, "err", err)
			continue
		}
		if n := len(snaps); n > 0 {
			lastRun[src.share.Name] = snaps[n-1].time
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	ours := map[string]bool{}
	wait := idleWait
	for _, src := range sources {
		name := src.share.Name
		ours[name] = true
		st := r.stateLocked(name)
		if !st.initialized {
			st.lastRun, st.initialized = lastRun[name], true
		}
		if st.running {
			continue
		}
		next := nextRun(src.share.Replication.Schedule, st, now)
		switch {
		case st.waiting > 0:
			// RunNext is about to make the next attempt; it satisfies
			// the schedule and any trigger as well.
		case st.triggered || (!next.IsZero() && !next.After(now)):
			st.begin()
			limit := retryCap(spec, name, now)
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := r.attempt(ctx, spec, name, st, nil)
				r.release(st, e, limit)
			}()
		case !next.IsZero():
			wait = min(wait, next.Sub(now))
		}
	}
	for name, st := range r.shares {
		if !ours[name] && !st.running && st.waiting == 0 {
			r.dropLocked(name, st)
		}
	}
	return max(wait, 0)
}

// dropLocked forgets a share's state and tells its waiters that the runs
// they wait for will not happen. Called with r.mu held.
func (r *Replicator) dropLocked(name string, st *shareState) {
	st.gone = true
	st.signal()
	delete(r.shares, name)
}

// nextRun is when a share's next attempt is due: its retry time after a
// failure, now when it never ran, else the schedule's first time after its
// last attempt. Zero means never.
func nextRun(s schema.Schedule, st *shareState, now time.Time) time.Time {
	switch {
	case st.failures > 0:
		return st.retryAt
	case st.lastRun.IsZero():
		return now
	}
	return s.Next(st.lastRun.In(now.Location()))
}

// sources lists the shares this appliance replicates, in spec order.
func (r *Replicator) sources(spec *schema.Spec) []replicaSource {
	if spec == nil {
		return nil
	}
	// Each share as it stands in the list: looking each up by name
	// (sourceOf) made this quadratic, about 30 ms of CPU on every agent at
	// every apply of a 1,000-share spec.
	var out []replicaSource
	for i := range spec.Shares {
		sh := &spec.Shares[i]
		if sh.Replication == nil || sh.State == schema.StateAbsent {
			continue
		}
		if src, err := sourceOfShare(spec, r.Appliance, sh, r.Active); err == nil {
			out = append(out, src)
		}
	}
	return out
}

// Trigger asks Run for an attempt of share that starts after this call,
// and returns that attempt's run number, for Wait. When no attempt is
// running one starts now. When one is running, it is not disturbed: the
// requested attempt starts when it ends, because the running one may have
// snapshotted the share before whatever the caller wants sent was
// written. Triggers made while one attempt runs are served by the same
// next attempt. It fails with ErrNotSource when this appliance does not
// replicate the share, and when Run is not running.
func (r *Replicator) Trigger(share string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.active {
		return 0, fmt.Errorf("replicate %s now: replication is not running on %s", share, r.Appliance)
	}
	if _, err := sourceOf(r.spec, r.Appliance, share, r.Active); err != nil {
		return 0, fmt.Errorf("replicate %s now: %w", share, err)
	}
	st := r.stateLocked(share)
	st.triggered = true
	if !st.running {
		select {
		case r.wakeLocked() <- struct{}{}:
		default:
		}
	}
	return st.started + 1, nil
}

// RetryTo makes the failing shares that replicate to target due now
// instead of at the end of their backoff, and returns how many. The agent
// calls it when target shows it is back (it reported its status again):
// a target that was down for a while would otherwise wait out a backoff
// grown to minutes, and with it everything that waits for the share to
// catch up (a failback).
func (r *Replicator) RetryTo(target string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	now, n := r.now(), 0
	for _, src := range r.sources(r.spec) {
		st := r.shares[src.share.Name]
		if src.target != target || st == nil || st.failures == 0 || st.running || !st.retryAt.After(now) {
			continue
		}
		st.retryAt = now
		n++
	}
	if n > 0 {
		select {
		case r.wakeLocked() <- struct{}{}:
		default:
		}
	}
	return n
}

// Current returns the run number of the attempt of share running now, or
// 0 when none is.
func (r *Replicator) Current(share string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.shares[share]; st != nil && st.running {
		return st.started
	}
	return 0
}

// Wait waits until attempt number run of share (from Trigger or Current)
// has ended and returns its trail entry; done is false when ctx ended
// first (an ended wait is not an error: callers wait in slices to show
// progress). When the attempt itself is no longer kept, it returns the
// newest ended one, which started later. It fails with ErrNoRun when the
// attempt will never run: the share stopped being this appliance's to
// send, or Run stopped.
func (r *Replicator) Wait(ctx context.Context, share string, run uint64) (e TrailEntry, done bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stateLocked(share)
	for {
		if st.finished >= run && len(st.results) > 0 {
			for _, res := range st.results {
				if res.run == run {
					return res.entry, true, nil
				}
			}
			return st.results[len(st.results)-1].entry, true, nil
		}
		// Not ended yet: it runs, or someone is about to start it.
		pending := st.running || st.waiting > 0 || (st.triggered && r.active)
		if st.gone || !pending {
			return TrailEntry{}, false, fmt.Errorf("replicate %s: run %d: %w", share, run, ErrNoRun)
		}
		changed := st.watch()
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			r.mu.Lock()
			return TrailEntry{}, false, nil
		}
		r.mu.Lock()
		if st.gone {
			return TrailEntry{}, false, fmt.Errorf("replicate %s: run %d: %w", share, run, ErrNoRun)
		}
	}
}

// Status reports the replication of every share this appliance replicates,
// by name, as Run last saw the spec.
func (r *Replicator) Status() []ShareReplication {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []ShareReplication
	for _, src := range r.sources(r.spec) {
		sh := src.share
		s := ShareReplication{Share: sh.Name, Target: src.target + "/" + src.targetPool, Schedule: sh.Replication.Schedule.String(), Epoch: src.act.Epoch}
		st := r.shares[sh.Name]
		if st == nil {
			st = &shareState{}
		}
		s.Running, s.Bytes, s.Queued = st.running, st.bytes.Load(), st.triggered
		s.LastAttempt, s.LastResult, s.LastError, s.Failures = st.lastAttempt, st.lastResult, st.lastError, st.failures
		if !st.running {
			s.NextRun = nextRun(sh.Replication.Schedule, st, now)
			if st.triggered {
				s.NextRun = now
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ShareReplication) int { return strings.Compare(a.Share, b.Share) })
	return out
}
