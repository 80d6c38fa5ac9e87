package raftstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/raftstore/pki"
	"github.com/fleetctl/fleetctl/schema"
)

// This file is the witness, the leader's side of the lease (the appliance's
// side is lease.go). The Raft quorum is the witness: every storage
// appliance renews a lease with the leader about every LeaseInterval, and
// the leader keeps the renewals in memory only, never in the log. The
// leader counts from when it received a renewal; a new leader counts every
// appliance as renewed when it took office. Every WitnessTick the leader
// looks at each member's lease and round trip, writes a witness event when
// something changed (an idle fleet writes nothing), and commits a failover
// of a share whose active appliance has gone unrenewed past the policy's
// failover_after, with a compare-and-set on the share's epoch, once it has
// verified that it still leads.

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

// witness is the leader's bookkeeping. Everything in it is reset when this
// node takes office and forgotten when it stops leading.
type witness struct {
	// mu guards the fields below. A failover holds it while it verifies
	// leadership and commits, so a renewal is counted either before the
	// failover decides (and prevents it) or after it committed (and its
	// answer carries an index that includes the failover).
	mu      sync.Mutex
	leading bool
	term    uint64    // counts the terms this node has led
	since   time.Time // when this node took office
	// renewals are the last renewal received from each appliance in this
	// term; seen is when the leader first counted an appliance (its taking
	// office, or later when the appliance first appears in the spec).
	renewals map[string]renewal
	seen     map[string]time.Time
	// What the witness log last said, to write transitions only.
	unreachable map[string]bool            // by appliance
	degraded    map[string]bool            // by appliance
	fenced      map[string]map[string]bool // appliance → shares it reports fenced
	// Once-per-outage events, by share.
	manualLogged  map[string]bool
	blockedLogged map[string]bool
}

// renewal is one received lease renewal.
type renewal struct {
	at  time.Time     // when the leader received it
	rtt time.Duration // the newest round trip the appliance measured; 0 unknown
}

// startTerm resets the bookkeeping when this node has taken office (after
// its Barrier): every appliance counts as renewed now, and what the log
// last said about each member and share is where transitions start from.
func (w *witness) startTerm(now time.Time, st *State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leading = true
	w.term++
	w.since = now
	w.renewals = map[string]renewal{}
	w.seen = map[string]time.Time{}
	w.unreachable = map[string]bool{}
	w.degraded = map[string]bool{}
	w.fenced = map[string]map[string]bool{}
	w.manualLogged = map[string]bool{}
	w.blockedLogged = map[string]bool{}
	for _, e := range st.WitnessLog {
		switch e.Event {
		case EventUnreachable:
			w.unreachable[e.Member] = true
		case EventReachable:
			w.unreachable[e.Member] = false
		case EventDegraded:
			w.degraded[e.Member] = true
		case EventRecovered:
			w.degraded[e.Member] = false
		}
	}
	for name, ns := range st.Nodes {
		for _, share := range ns.Fenced {
			w.setFenced(name, share, true)
		}
	}
	if st.Spec == nil {
		return
	}
	for _, sh := range replicatedShares(st.Spec) {
		active, _, _ := activeReplica(st, sh)
		// An outage already reported (by an earlier leader) is not
		// reported again, unless the appliance was back since.
	scan:
		for i := len(st.WitnessLog) - 1; i >= 0; i-- {
			e := st.WitnessLog[i]
			switch {
			case e.Member == active && e.Event == EventReachable:
				break scan
			case e.Share == sh.Name && e.Event == EventFailoverManual:
				w.manualLogged[sh.Name] = true
				break scan
			case e.Share == sh.Name && e.Event == EventFailoverBlocked:
				w.blockedLogged[sh.Name] = true
				break scan
			case e.Share == sh.Name:
				break scan
			}
		}
	}
}

// endTerm forgets every renewal: they were this term's.
func (w *witness) endTerm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leading = false
	w.renewals = nil
}

// renew counts a renewal from appliance received at now, and returns the
// leader's applied index (read under the lock: see witness.mu).
func (w *witness) renew(appliance string, rtt time.Duration, now time.Time, applied func() uint64) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.leading {
		return 0, false
	}
	r := renewal{at: now, rtt: rtt}
	if rtt <= 0 {
		r.rtt = w.renewals[appliance].rtt
	}
	w.renewals[appliance] = r
	return applied(), true
}

// see starts counting appliance at now if the leader has not counted it
// yet this term. w.mu is held.
func (w *witness) see(appliance string, now time.Time) {
	if _, ok := w.seen[appliance]; !ok {
		w.seen[appliance] = now
	}
}

// lastRenewal is when the leader last counted appliance as renewed, and
// whether that was a renewal it received (not its taking office or first
// seeing the appliance). w.mu is held.
func (w *witness) lastRenewal(appliance string) (time.Time, bool) {
	base := w.since
	if s, ok := w.seen[appliance]; ok && s.After(base) {
		base = s
	}
	if r, ok := w.renewals[appliance]; ok && !r.at.Before(base) {
		return r.at, true
	}
	return base, false
}

// reachable says whether appliance renewed within ReachableWindow of now;
// received says the renewal must be a received one. w.mu is held.
func (w *witness) reachable(appliance string, now time.Time, received bool) bool {
	last, renewed := w.lastRenewal(appliance)
	return (renewed || !received) && now.Sub(last) <= ReachableWindow
}

// setFenced records what an appliance reports fenced. w.mu is held.
func (w *witness) setFenced(appliance, share string, fenced bool) {
	if !fenced {
		delete(w.fenced[appliance], share)
		return
	}
	if w.fenced[appliance] == nil {
		w.fenced[appliance] = map[string]bool{}
	}
	w.fenced[appliance][share] = true
}

// pendingEvent is a witness event to commit, and what the witness then
// remembers.
type pendingEvent struct {
	e      WitnessEvent
	commit func() // runs with w.mu held once e is in the log
}

// runWitness runs the leader's witness until ctx ends; it acts only while
// this node is the ready leader.
func (n *Node) runWitness(ctx context.Context) {
	t := time.NewTicker(WitnessTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.leaderReady.Load() {
			n.witnessCheck(ctx)
		}
	}
}

// witnessCheck looks at every lease once: it writes the transitions to the
// witness log and fails over the shares that are due.
func (n *Node) witnessCheck(ctx context.Context) {
	st := n.fsm.State()
	if st.Spec == nil {
		return
	}
	w := &n.wit
	pol := st.Spec.Witness
	now := time.Now()
	at := now.UTC()

	w.mu.Lock()
	if !w.leading {
		w.mu.Unlock()
		return
	}
	term := w.term
	var events []pendingEvent
	for _, a := range st.Spec.Appliances {
		if a.Role == schema.RoleWitness {
			continue
		}
		name := a.Name
		w.see(name, now)
		last, renewed := w.lastRenewal(name)
		age := now.Sub(last)
		reachable := age <= ReachableWindow
		switch {
		case !reachable && !w.unreachable[name]:
			events = append(events, pendingEvent{
				e:      WitnessEvent{At: at, Member: name, Event: EventUnreachable, Detail: fmt.Sprintf("%s has not renewed its lease for %s (> %s)", name, roundAge(age), ReachableWindow)},
				commit: func() { w.unreachable[name] = true },
			})
		case reachable && renewed && w.unreachable[name]:
			events = append(events, pendingEvent{
				e:      WitnessEvent{At: at, Member: name, Event: EventReachable, Detail: name + " renews its lease again"},
				commit: func() { w.unreachable[name] = false },
			})
		}
		rtt := w.renewals[name].rtt
		if !reachable || !renewed || rtt <= 0 {
			continue
		}
		limit := time.Duration(pol.DegradedLatency)
		switch {
		case rtt > limit && !w.degraded[name]:
			events = append(events, pendingEvent{
				e:      WitnessEvent{At: at, Member: name, Event: EventDegraded, Detail: fmt.Sprintf("%s's lease round trip took %s > degraded_latency %s", name, roundRTT(rtt), pol.DegradedLatency)},
				commit: func() { w.degraded[name] = true },
			})
		case float64(rtt) <= recoverFraction*float64(limit) && w.degraded[name]:
			events = append(events, pendingEvent{
				e:      WitnessEvent{At: at, Member: name, Event: EventRecovered, Detail: fmt.Sprintf("%s's lease round trip is %s again (degraded_latency %s)", name, roundRTT(rtt), pol.DegradedLatency)},
				commit: func() { w.degraded[name] = false },
			})
		}
	}
	events = append(events, w.fenceEvents(st, at)...)

	type due struct {
		sh              *schema.Share
		active, replica string
		epoch           uint64
	}
	var failovers []due
	for _, sh := range replicatedShares(st.Spec) {
		active, replica, epoch := activeReplica(st, sh)
		w.see(active, now)
		w.see(replica, now)
		last, _ := w.lastRenewal(active)
		age := now.Sub(last)
		if age <= time.Duration(pol.FailoverAfter) {
			delete(w.manualLogged, sh.Name)
			delete(w.blockedLogged, sh.Name)
			continue
		}
		why := fmt.Sprintf("%s unreachable for %s > failover_after %s", active, roundAge(age), pol.FailoverAfter)
		share := sh.Name
		switch {
		case sh.Failover == schema.FailoverManual:
			if !w.manualLogged[share] {
				events = append(events, pendingEvent{
					e:      WitnessEvent{At: at, Member: active, Share: share, Event: EventFailoverManual, Detail: fmt.Sprintf("%s; %s has failover: manual: run fleetctl failover %s --to %s", why, share, share, replica)},
					commit: func() { w.manualLogged[share] = true },
				})
			}
		case !w.reachable(replica, now, true):
			if !w.blockedLogged[share] {
				n.log.Warn("a share is due to fail over but its replica is unreachable too; waiting", "share", share, "active", active, "replica", replica)
				events = append(events, pendingEvent{
					e:      WitnessEvent{At: at, Member: active, Share: share, Event: EventFailoverBlocked, Detail: fmt.Sprintf("%s, but the replica %s is unreachable too; waiting for either", why, replica)},
					commit: func() { w.blockedLogged[share] = true },
				})
			}
		default:
			failovers = append(failovers, due{sh, active, replica, epoch})
		}
	}
	w.mu.Unlock()

	for _, p := range events {
		if err := n.writeWitnessEvent(p.e); err != nil {
			n.log.Warn("could not write a witness event; will retry", "event", p.e.Event, "member", p.e.Member, "err", err)
			continue
		}
		n.log.Info("witness: "+p.e.Event, "member", p.e.Member, "share", p.e.Share, "detail", p.e.Detail)
		w.mu.Lock()
		if w.leading && w.term == term {
			p.commit()
		}
		w.mu.Unlock()
	}
	for _, f := range failovers {
		n.failover(ctx, term, f.sh, f.active, f.replica, f.epoch, time.Duration(pol.FailoverAfter), pol.FailoverAfter)
	}
}

// fenceEvents compares what the appliances report fenced with what the
// witness last logged. w.mu is held.
func (w *witness) fenceEvents(st *State, at time.Time) []pendingEvent {
	var events []pendingEvent
	names := make([]string, 0, len(st.Nodes)+len(w.fenced))
	for name := range st.Nodes {
		names = append(names, name)
	}
	for name := range w.fenced {
		if _, ok := st.Nodes[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		reported := st.Nodes[name].Fenced
		for _, share := range reported {
			if !w.fenced[name][share] {
				events = append(events, pendingEvent{
					e:      WitnessEvent{At: at, Member: name, Share: share, Event: EventFenced, Detail: fmt.Sprintf("%s made %s read-only: its lease lapsed (fence_after %s)", name, share, specFenceAfter(st))},
					commit: func() { w.setFenced(name, share, true) },
				})
			}
		}
		for _, share := range slices.Sorted(maps.Keys(w.fenced[name])) {
			if slices.Contains(reported, share) {
				continue
			}
			detail := fmt.Sprintf("%s made %s writable again: its lease is renewed and the share's epoch did not move", name, share)
			if sh := specShare(st, share); sh != nil {
				if active, _, epoch := activeReplica(st, sh); active != name {
					detail = fmt.Sprintf("%s moved to %s (epoch %d) while %s was fenced; %s's copy stays read-only", share, active, epoch, name, name)
				}
			}
			events = append(events, pendingEvent{
				e:      WitnessEvent{At: at, Member: name, Share: share, Event: EventUnfenced, Detail: detail},
				commit: func() { w.setFenced(name, share, false) },
			})
		}
	}
	return events
}

// failover commits a failover of sh from active to replica, if this node
// still leads in term and active is still unrenewed past failoverAfter.
// It holds w.mu throughout (see witness.mu).
func (n *Node) failover(ctx context.Context, term uint64, sh *schema.Share, active, replica string, epoch uint64, failoverAfter time.Duration, written schema.Duration) {
	w := &n.wit
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.leading || w.term != term || ctx.Err() != nil {
		return
	}
	now := time.Now()
	last, _ := w.lastRenewal(active)
	age := now.Sub(last)
	if age <= failoverAfter {
		return
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		n.log.Warn("not failing over: lost leadership", "share", sh.Name, "err", err)
		return
	}
	cmd := FailoverShare{
		Share:         sh.Name,
		From:          active,
		To:            replica,
		ExpectedEpoch: epoch,
		Reason:        fmt.Sprintf("%s unreachable for %s > failover_after %s", active, roundAge(age), written),
		At:            now.UTC(),
	}
	data, err := EncodeCommand(CmdFailover, cmd)
	if err != nil {
		n.log.Error("cannot encode a failover", "err", err)
		return
	}
	resp, err := applyResponse(n.raft.Apply(data, 5*time.Second))
	switch {
	case errors.Is(err, ErrEpochMismatch):
		n.log.Info("failover not needed: the share's epoch moved", "share", sh.Name, "err", err)
	case err != nil:
		n.log.Warn("could not commit a failover; will retry", "share", sh.Name, "err", err)
	default:
		delete(w.blockedLogged, sh.Name)
		n.log.Warn("failed over", "share", sh.Name, "from", active, "to", replica, "epoch", resp.(FailoverResult).Epoch, "reason", cmd.Reason)
	}
}

// writeWitnessEvent commits one witness event through Raft (this node
// leads). The Ignorable bit lets an older agent skip it.
func (n *Node) writeWitnessEvent(e WitnessEvent) error {
	data, err := EncodeCommand(CmdWitnessEvent|Ignorable, e)
	if err != nil {
		return err
	}
	_, err = applyResponse(n.raft.Apply(data, 5*time.Second))
	return err
}

func (n *Node) handleLease(w http.ResponseWriter, r *http.Request) {
	var req LeaseRequest
	if !readJSON(w, r, &req) {
		return
	}
	if u := userOf(r); u != string(pki.RoleNode)+":"+req.Appliance {
		writeError(w, http.StatusForbidden, &APIError{Code: CodeUnauthorized, Message: fmt.Sprintf("only the agent %q renews its own lease (asked by %s)", req.Appliance, u)})
		return
	}
	rtt := time.Duration(req.PreviousRTTMillis * float64(time.Millisecond))
	idx, ok := n.wit.renew(req.Appliance, rtt, time.Now(), n.raft.AppliedIndex)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, &APIError{Code: CodeNoLeader, Message: n.cfg.Name + " is no longer the leader; retry"})
		return
	}
	writeJSON(w, http.StatusOK, LeaseResponse{Leader: n.cfg.Name, AppliedIndex: idx})
}

func (n *Node) handleWitnessStatus(w http.ResponseWriter, r *http.Request) {
	st := n.fsm.State()
	now := time.Now()
	out := WitnessStatus{Leader: n.cfg.Name, Members: []WitnessMember{}, Shares: shareFailovers(st)}
	if out.Shares == nil {
		out.Shares = []ShareFailover{}
	}
	if st.Spec == nil {
		writeJSON(w, http.StatusOK, out)
		return
	}
	pol := st.Spec.Witness
	out.Policy = WitnessPolicy{
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
	out.LeaderSince = wit.since.UTC()
	for _, a := range st.Spec.Appliances {
		m := WitnessMember{Name: a.Name, Role: a.Role, LastRenewalMS: -1}
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
		last, renewed := wit.lastRenewal(a.Name)
		m.LastRenewalMS = now.Sub(last).Milliseconds()
		m.Reachable = now.Sub(last) <= ReachableWindow
		if renewed {
			rtt := wit.renewals[a.Name].rtt
			m.RTTMillis = float64(rtt.Microseconds()) / 1000
			m.Degraded = m.Reachable && wit.degraded[a.Name]
		}
		out.Members = append(out.Members, m)
	}
	wit.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleWitnessLog(w http.ResponseWriter, r *http.Request) {
	l := n.fsm.State().WitnessLog
	if l == nil {
		l = []WitnessEvent{}
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

// activeReplica returns the appliance active for a replicated share (the
// failover entry's, else the spec's), the other one, and the share's epoch
// (the entry's, 0 without one).
func activeReplica(st *State, sh *schema.Share) (active, replica string, epoch uint64) {
	active = sh.Appliance
	if fo, ok := st.Failover[sh.Name]; ok {
		epoch = fo.Epoch
		if fo.Active != "" {
			active = fo.Active
		}
	}
	replica = sh.Replication.To.Appliance
	if active != sh.Appliance {
		replica = sh.Appliance
	}
	return active, replica, epoch
}

// shareFailovers lists every replicated share of the stored spec (whatever
// its failover mode) with its failover state and who reports it fenced.
func shareFailovers(st *State) []ShareFailover {
	if st.Spec == nil {
		return nil
	}
	var out []ShareFailover
	for i := range st.Spec.Shares {
		sh := &st.Spec.Shares[i]
		if sh.Replication == nil || sh.State == schema.StateAbsent {
			continue
		}
		active, replica, epoch := activeReplica(st, sh)
		sf := ShareFailover{Share: sh.Name, Active: active, Replica: replica, Epoch: epoch, Failover: sh.Failover}
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

func specShare(st *State, name string) *schema.Share {
	if st.Spec == nil {
		return nil
	}
	sh := st.Spec.Share(name)
	if sh == nil || sh.Replication == nil {
		return nil
	}
	return sh
}

func specFenceAfter(st *State) schema.Duration {
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
