package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file is the witness, the leader's side of the lease (the appliance's
// side is lease.go). The Raft quorum is the witness: every storage
// appliance renews a lease with the leader about every LeaseInterval, and
// the leader keeps the renewals in memory only, never in the log. The
// leader answers a renewal after a check round of the voters
// (witnessack.go) and counts from when it received it; a new leader counts
// every appliance as renewed when it took office, and the leader it
// followed from the bound the voters' reports give (creditPrior). Every WitnessTick the leader
// looks at each member's lease and round trip, writes a witness event when
// something changed (an idle fleet writes nothing), and commits a failover
// of a share whose active appliance has gone unrenewed past the policy's
// failover_after, with a compare-and-set on the share's epoch, once it has
// verified that it still leads. What to write and what to fail over is
// decided by decideWitness (witnessdecide.go), a pure function; this file
// is the edge that reads the clock, holds the lock and commits.

// Timings of the witness.
const (
	// LeaseInterval is how often a storage appliance renews its lease
	// (schema.LeaseRenewal, which validation's fence_after rule counts on).
	LeaseInterval = schema.LeaseRenewal
	// ReachableWindow is how recently an appliance must have renewed to
	// count as reachable: three renewals.
	ReachableWindow = 3 * LeaseInterval
	// WitnessTick is how often the leader looks at the leases.
	WitnessTick = 250 * time.Millisecond
)

// recoverFraction is the hysteresis of the degraded state: a degraded
// member has recovered when its round trip is at most this fraction of
// degraded_latency, so a link hovering at the limit does not fill the
// witness log.
const recoverFraction = 0.8

// witness is the leader's side of the lease at the edge: the bookkeeping
// decideWitness reads, and the lock that orders renewals against
// failovers. The book is reset when this node takes office and its
// renewals forgotten when it stops leading.
type witness struct {
	// mu guards the fields below. A failover holds it while it confirms
	// the decision, verifies leadership and commits, so a renewal is
	// counted either before the failover decides (and prevents it) or
	// after it committed (and its answer carries an index that includes
	// the failover).
	mu      sync.Mutex
	leading bool
	term    uint64 // counts the terms this node has led
	book    witnessBook
	// reports are the voters' reports (handleWitnessReport), by voter,
	// kept from before this node takes office in their term.
	reports map[string]priorReport
}

// leadTerm is what a node that has just taken office knows of it: the
// Raft term it leads and the voters of its configuration then.
type leadTerm struct {
	term   uint64
	voters []string
	// configIndex is the index of that configuration.
	configIndex uint64
}

// startTerm starts the bookkeeping when this node has taken office (after
// its Barrier) at now, from the state st (see newWitnessBook), crediting
// the leader it followed before (see creditPrior) with the reports the
// voters sent in this term so far.
func (w *witness) startTerm(now time.Time, st *store.State, prior priorLeader, o leadTerm) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leading = true
	w.term++
	w.book = newWitnessBook(now, st)
	w.book.term, w.book.voters, w.book.configIndex = o.term, o.voters, o.configIndex
	w.book.reports = map[string]priorReport{}
	for voter, r := range w.reports {
		if r.term == o.term {
			w.book.reports[voter] = r
		}
	}
	w.book.creditPrior(prior, st.Spec, now)
}

// report takes a voter's report r, in Raft term r.term, before or after
// this node took office in it.
func (w *witness) report(voter string, r priorReport, spec *schema.Spec) {
	w.mu.Lock()
	defer w.mu.Unlock()
	term := r.term
	if old, ok := w.reports[voter]; !ok || old.term != term || r.at.Before(old.at) {
		if w.reports == nil {
			w.reports = map[string]priorReport{}
		}
		w.reports[voter] = r
	}
	if w.leading && w.book.term == term {
		w.book.addReport(voter, r, spec)
	}
}

// endTerm forgets every renewal: they were this term's.
func (w *witness) endTerm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leading = false
	w.book.renewals = nil
}

// renew counts a renewal from appliance received at now, and returns the
// leader's applied index (read under the lock: see witness.mu).
func (w *witness) renew(appliance string, rtt time.Duration, now time.Time, applied func() uint64) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.leading {
		return 0, false
	}
	w.book.renew(appliance, rtt, now)
	return applied(), true
}

// runWitness runs the leader's witness until ctx ends; it acts only while
// this node is the ready leader.
func (n *Node) runWitness(ctx context.Context) {
	every(ctx, WitnessTick, func() {
		if n.leaderReady.Load() {
			n.witnessCheck(ctx)
		}
	})
}

// witnessCheck looks at every lease once: decideWitness decides, and this
// does what it decided. It writes the events, recording each in the book
// once it is in the log (an event that could not be written is decided
// again at the next look), and then commits the failovers due.
func (n *Node) witnessCheck(ctx context.Context) {
	st := n.fsm.State()
	if st.Spec == nil {
		return
	}
	w := &n.wit
	now := time.Now()

	w.mu.Lock()
	if !w.leading {
		w.mu.Unlock()
		return
	}
	term := w.term
	// Decided under the lock: renewals change the book meanwhile.
	d := decideWitness(witnessInput{State: st, Book: w.book, Now: now})
	w.book.note(d, now)
	w.mu.Unlock()

	for _, e := range d.Events {
		if e.Event == store.EventFailoverBlocked {
			n.log.Warn("a share is due to fail over but its replica is unreachable too; waiting", "share", e.Share, "active", e.Member, "detail", e.Detail)
		}
		if err := n.writeWitnessEvent(e); err != nil {
			n.log.Warn("could not write a witness event; will retry", "event", e.Event, "member", e.Member, "err", err)
			continue
		}
		n.log.Info("witness: "+e.Event, "member", e.Member, "share", e.Share, "detail", e.Detail)
		w.mu.Lock()
		if w.leading && w.term == term {
			w.book.record(e)
		}
		w.mu.Unlock()
	}
	for _, f := range d.Failovers {
		n.failover(ctx, term, f)
	}
}

// failover commits the failover f if this node still leads in term and
// f is still due (witnessFailover.confirm). It holds w.mu throughout (see
// witness.mu).
func (n *Node) failover(ctx context.Context, term uint64, f witnessFailover) {
	w := &n.wit
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.leading || w.term != term || ctx.Err() != nil {
		return
	}
	cmd, due := f.confirm(&w.book, time.Now())
	if !due {
		return
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		n.log.Warn("not failing over: lost leadership", "share", f.Share, "err", err)
		return
	}
	resp, err := n.apply(store.CmdFailover, cmd)
	switch {
	case errors.Is(err, store.ErrEpochMismatch):
		n.log.Info("failover not needed: the share's epoch moved", "share", f.Share, "err", err)
	case err != nil:
		n.log.Warn("could not commit a failover; will retry", "share", f.Share, "err", err)
	default:
		// The FSM wrote the failover event with the failover itself.
		w.book.record(store.WitnessEvent{Member: cmd.From, Share: cmd.Share, Event: store.EventFailover})
		n.log.Warn("failed over", "share", f.Share, "from", cmd.From, "to", cmd.To, "epoch", resp.(store.FailoverResult).Epoch, "reason", cmd.Reason)
	}
}

// writeWitnessEvent commits one witness event through Raft (this node
// leads). The Ignorable bit lets an older agent skip it.
func (n *Node) writeWitnessEvent(e store.WitnessEvent) error {
	_, err := n.apply(store.CmdWitnessEvent|store.Ignorable, e)
	return err
}

func (n *Node) handleLease(w http.ResponseWriter, r *http.Request) {
	var req client.LeaseRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !requireSelf(w, r, req.Appliance, "renews its own lease") {
		return
	}
	rtt := time.Duration(req.PreviousRTTMillis * float64(time.Millisecond))
	received := time.Now()
	// Answered only after a check round that started after its receipt
	// (witnessack.go): the bound a new leader credits the old one from.
	if err := n.confirmed(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: n.cfg.Name + " could not confirm it still leads: " + err.Error() + "; retry"})
		return
	}
	idx, ok := n.wit.renew(req.Appliance, rtt, received, n.raft.AppliedIndex)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: n.cfg.Name + " is no longer the leader; retry"})
		return
	}
	held := time.Since(received)
	writeJSON(w, http.StatusOK, client.LeaseResponse{Leader: n.cfg.Name, AppliedIndex: idx, CheckMillis: float64(held.Microseconds()) / 1000})
}

func (n *Node) handleWitnessStatus(w http.ResponseWriter, r *http.Request) {
	st := n.fsm.State()
	now := time.Now()
	out := client.WitnessStatus{Leader: n.cfg.Name, Members: []client.WitnessMember{}, Shares: shareFailovers(st)}
	if out.Shares == nil {
		out.Shares = []client.ShareFailover{}
	}
	if st.Spec == nil {
		writeJSON(w, http.StatusOK, out)
		return
	}
	pol := st.Spec.Witness
	out.Policy = client.WitnessPolicy{
		FailoverAfterMS:   time.Duration(pol.FailoverAfter).Milliseconds(),
		FenceAfterMS:      time.Duration(pol.FenceAfter).Milliseconds(),
		DegradedLatencyMS: time.Duration(pol.DegradedLatency).Milliseconds(),
		Failback:          pol.Failback,
	}
	limit := time.Duration(pol.DegradedLatency)
	// Witness appliances hold no lease: they are pinged.
	var pinged []raft.Server
	for _, a := range st.Spec.Appliances {
		if a.Role == schema.RoleWitness {
			if addr, err := n.memberAddr(a.Name); err == nil {
				pinged = append(pinged, raft.Server{ID: raft.ServerID(a.Name), Address: raft.ServerAddress(addr)})
			}
		}
	}
	pings := n.pingAll(r.Context(), pinged)

	wit := &n.wit
	wit.mu.Lock()
	out.LeaderSince = wit.book.since.UTC()
	for _, a := range st.Spec.Appliances {
		m := client.WitnessMember{Name: a.Name, Role: a.Role, LastRenewalMS: -1}
		if a.Role == schema.RoleWitness {
			p, ok := pings[raft.ServerID(a.Name)]
			switch {
			case !ok:
				m.Error = fmt.Sprintf("no agent named %q has joined the fleet", a.Name)
			case p.err != nil:
				m.Error = p.err.Error()
			case a.Name == n.cfg.Name:
				m.Reachable = true
			default:
				m.Reachable = true
				m.RTTMillis = float64(p.rtt.Microseconds()) / 1000
				m.Degraded = p.rtt > limit
			}
			out.Members = append(out.Members, m)
			continue
		}
		m.Lease = true
		last, renewed := wit.book.lastRenewal(a.Name)
		m.LastRenewalMS = now.Sub(last).Milliseconds()
		m.Reachable = now.Sub(last) <= ReachableWindow
		if renewed {
			rtt := wit.book.renewals[a.Name].rtt
			m.RTTMillis = float64(rtt.Microseconds()) / 1000
			m.Degraded = m.Reachable && wit.book.degraded[a.Name]
		}
		out.Members = append(out.Members, m)
	}
	wit.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleWitnessLog(w http.ResponseWriter, r *http.Request) {
	l := n.fsm.State().WitnessLog
	if l == nil {
		l = []store.WitnessEvent{}
	}
	writeJSON(w, http.StatusOK, l)
}

// replicatedShares are the shares of spec the witness watches: replicated,
// present, with failover auto or manual.
func replicatedShares(spec *schema.Spec) []*schema.Share {
	var out []*schema.Share
	for i := range spec.Shares {
		sh := &spec.Shares[i]
		if sh.Replication != nil && sh.State != schema.StateAbsent && sh.Failover != schema.FailoverOff {
			out = append(out, sh)
		}
	}
	return out
}

// shareFailovers lists every replicated share of the stored spec (whatever
// its failover mode) with its failover state and who reports it fenced.
func shareFailovers(st *store.State) []client.ShareFailover {
	if st.Spec == nil {
		return nil
	}
	var out []client.ShareFailover
	for i := range st.Spec.Shares {
		sh := &st.Spec.Shares[i]
		if sh.Replication == nil || sh.State == schema.StateAbsent {
			continue
		}
		pl, _ := st.Place(sh)
		active, replica, epoch := pl.Active.Appliance, pl.Replica.Appliance, pl.Epoch
		sf := client.ShareFailover{Share: sh.Name, Active: active, Replica: replica, Epoch: epoch, Failover: sh.Failover}
		for _, a := range st.Spec.Appliances {
			if slices.Contains(st.Nodes[a.Name].Fenced, sh.Name) {
				sf.Fenced = true
				sf.FencedOn = append(sf.FencedOn, a.Name)
			}
		}
		out = append(out, sf)
	}
	return out
}

// shareEpoch is a share's failover epoch in this agent's copy of the
// state: 0 until its first failover. Replication streams carry it
// (reconcile.Replicator.Epoch) and receivers refuse an older one
// (reconcile.Receiver.Epoch).
func (n *Node) shareEpoch(share string) uint64 {
	return n.fsm.State().Failover[share].Epoch
}

func specShare(st *store.State, name string) *schema.Share {
	if st.Spec == nil {
		return nil
	}
	sh := st.Spec.Share(name)
	if sh == nil || sh.Replication == nil {
		return nil
	}
	return sh
}

func specFenceAfter(st *store.State) schema.Duration {
	if st.Spec == nil {
		return 0
	}
	return st.Spec.Witness.FenceAfter
}

// roundAge rounds a lease age for people: tenths of a second below 10s,
// seconds above.
func roundAge(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// roundRTT rounds a round trip for people.
func roundRTT(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// priorSample is how often an agent notes the leader it follows and when
// it last heard from it. Raft's last contact stops moving when the leader
// dies, and the leader stays known for a heartbeat timeout after, so the
// sample taken then is exact; the interval only bounds how stale a
// sample of a leader that changed in between can be.
const priorSample = 100 * time.Millisecond

// priorTracker holds the newest sample of the leader this agent follows.
type priorTracker struct {
	mu sync.Mutex
	p  priorLeader
}

func (t *priorTracker) get() priorLeader {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}

// notePrior samples the leader this agent follows (not itself), the term
// it leads and its last contact, for the credit a new leader gives it
// (creditPrior). The term is read before and after the leader: a sample
// across a change of term is dropped.
func (n *Node) notePrior() {
	term := n.raft.CurrentTerm()
	_, id := n.raft.LeaderWithID()
	if id == "" || string(id) == n.cfg.Name || n.raft.CurrentTerm() != term {
		return
	}
	p := priorLeader{name: string(id), contact: n.raft.LastContact(), term: term}
	n.prior.mu.Lock()
	n.prior.p = p
	n.prior.mu.Unlock()
}
