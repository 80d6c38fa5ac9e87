package agent

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file is the witness's decider: what the leader should write and
// which shares should fail over, from the replicated state, the leader's
// bookkeeping of renewals, and the time, with no clock, lock or Raft of its
// own, as the reconcile planner decides. witness.go is the edge that reads
// the clock, holds the lock, writes the events and commits the failovers.

// witnessBook is the leader's bookkeeping: the renewals it received this
// term and what the witness log last said. It is a plain value; the node
// keeps one under witness.mu, and the decider only reads it.
type witnessBook struct {
	// since is when this node took office: every appliance counts as
	// renewed then, since the renewals went to the old leader's memory.
	since time.Time
	// renewals are the last renewal received from each appliance in this
	// term; seen is when the leader first counted an appliance (its taking
	// office, or later when the appliance is first named in the spec).
	renewals map[string]renewal
	seen     map[string]time.Time
	// credited is the leader this node followed before it took office, a
	// storage appliance, counted as renewed when this node last heard from
	// it rather than at office (creditPrior).
	credited map[string]time.Time
	// prior is that leader; term is the Raft term this node leads, voters
	// the voters of its configuration at office (configIndex, its index),
	// and reports what they reported in that term (by voter, this node
	// included), for the credit (recredit).
	prior       priorLeader
	term        uint64
	voters      []string
	configIndex uint64
	reports     map[string]priorReport
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

// newWitnessBook is the bookkeeping of a leader that took office at now
// (after its Barrier) with the state st: every appliance counts as renewed
// now, and what the log last said about each member and share is where
// transitions start from, so an outage an earlier leader reported is not
// reported again.
func newWitnessBook(now time.Time, st *store.State) witnessBook {
	b := witnessBook{
		since:         now,
		renewals:      map[string]renewal{},
		seen:          map[string]time.Time{},
		unreachable:   map[string]bool{},
		degraded:      map[string]bool{},
		fenced:        map[string]map[string]bool{},
		manualLogged:  map[string]bool{},
		blockedLogged: map[string]bool{},
	}
	for _, e := range st.WitnessLog {
		switch e.Event {
		case store.EventUnreachable, store.EventReachable, store.EventDegraded, store.EventRecovered:
			b.record(e)
		}
	}
	// The fences come from what the appliances report now, not from the
	// log: the log keeps only the newest events.
	for name, ns := range st.Nodes {
		for _, share := range ns.Fenced {
			b.setFenced(name, share, true)
		}
	}
	if st.Spec == nil {
		return b
	}
	// Everyone the spec names now counts from office, not from the first
	// look a tick later (a look the decider would count as first sight).
	for _, a := range st.Spec.Appliances {
		if a.Role != schema.RoleWitness {
			b.seen[a.Name] = now
		}
	}
	for _, sh := range replicatedShares(st.Spec) {
		pl, _ := st.Place(sh)
		active, replica := pl.Active.Appliance, pl.Replica.Appliance
		b.seen[active] = now
		b.seen[replica] = now
		// An outage already reported (by an earlier leader) is not
		// reported again, unless the appliance was back since.
	scan:
		for i := len(st.WitnessLog) - 1; i >= 0; i-- {
			e := st.WitnessLog[i]
			switch {
			case e.Member == active && e.Event == store.EventReachable:
				break scan
			case e.Share == sh.Name && (e.Event == store.EventFailoverManual || e.Event == store.EventFailoverBlocked):
				b.record(e)
				break scan
			case e.Share == sh.Name:
				break scan
			}
		}
	}
	return b
}

// renew counts a renewal from appliance received at now. A renewal without
// a measured round trip keeps the last one known.
func (b *witnessBook) renew(appliance string, rtt time.Duration, now time.Time) {
	r := renewal{at: now, rtt: rtt}
	if rtt <= 0 {
		r.rtt = b.renewals[appliance].rtt
	}
	b.renewals[appliance] = r
}

// priorLeader is the member this node last followed as leader, and when
// it last heard from it (raft's LastContact, sampled while following).
type priorLeader struct {
	name    string
	contact time.Time
	term    uint64 // the Raft term it led when sampled
}

// priorReport is a voter's report to this leader: the newest time it
// confirmed a check round of an earlier term (or started), on this
// leader's clock (reportedContact), and the term it reported in.
type priorReport struct {
	term uint64
	at   time.Time
	// yesTerm and yesCfg are the term of that confirmation and the newest
	// configuration index the voter confirmed in it (0: none since it
	// started).
	yesTerm uint64
	yesCfg  uint64
}

// reportedContact turns a voter's report, an age at sending, into a time
// of the leader's clock: receipt − age, never earlier than the truth (the
// report was sent before it was received; a negative age counts as 0).
func reportedContact(receipt time.Time, age time.Duration) time.Time {
	return receipt.Add(-max(age, 0))
}

// reportedBound is the bound B on the send time of every renewal any
// leader answered before term: the latest contact reported, in term, by a
// majority of voters other than p (the leader being credited, which must
// be a voter). Every renewal a leader of this version answered waited for
// a check round that a majority of the voters confirmed after receiving
// it; that majority meets any majority of the others (in one
// configuration, or two that differ by one voter), and each of those
// reports its newest confirmation of an earlier term.
//
// It needs evidence that this holds for the term just before term, whose
// leader could still answer renewals as this node took office: p led
// term − 1 (no leader came between), and a counted reporter confirmed a
// round of term − 1 under this node's configuration (configIndex) or a
// newer one. Without it — the leader before ran no check rounds (an agent
// from before them, in a rolling upgrade), or its last rounds were under
// an earlier configuration (voters changed just before it died), or an
// election was lost in between — there is no bound, and the old rule
// (office) holds. False until such a majority reported.
func reportedBound(p priorLeader, voters []string, configIndex uint64, reports map[string]priorReport, term uint64) (time.Time, bool) {
	if !slices.Contains(voters, p.name) || p.term == 0 || p.term+1 != term {
		return time.Time{}, false
	}
	var b time.Time
	q, evidence := 0, false
	for _, v := range voters {
		r, ok := reports[v]
		if v == p.name || !ok || r.term != term {
			continue
		}
		q++
		b = maxTime(b, r.at)
		if r.yesTerm == p.term && r.yesCfg >= configIndex {
			evidence = true
		}
	}
	if q < len(voters)/2+1 || !evidence {
		return time.Time{}, false
	}
	return b, true
}

// creditPrior counts p, the leader this node followed before taking
// office at now, as renewed earlier than office, as every other appliance
// is: when the active appliance of a share was the leader and died, the
// failover then comes failover_after after it went silent rather than
// failover_after after the election. The credit is recomputed as reports
// arrive (addReport); see recredit.
func (b *witnessBook) creditPrior(p priorLeader, spec *schema.Spec, now time.Time) {
	b.prior = p
	b.since = now
	b.recredit(spec)
}

// addReport takes a voter's report and credits the prior leader again.
// Of several reports from one voter for a term the earliest counts: each
// is no earlier than the truth.
func (b *witnessBook) addReport(voter string, r priorReport, spec *schema.Spec) {
	if b.reports == nil {
		b.reports = map[string]priorReport{}
	}
	if old, ok := b.reports[voter]; ok && old.term == r.term && old.at.Before(r.at) {
		return
	}
	b.reports[voter] = r
	b.recredit(spec)
}

// recredit credits the prior leader (if a storage appliance in spec) from
// the earlier of two bounds on its last answered renewal, each of which
// keeps the whole validated margin:
//
//   - the reports of a majority of the other voters (reportedBound), B:
//     the old leader's appliance counts its lease from a renewal sent no
//     later than B, so it fences by B + fence_after, and the failover at
//     B + failover_after comes after it with the full margin. Never later
//     than office.
//   - without them, this node's own last contact, never below
//     office + fence_after + FenceMargin − failover_after: the old leader
//     answers renewals only before this node's office, so the earliest
//     failover is still fence_after + FenceMargin after that; at the
//     minimum margin this is office itself, no credit.
//
// A credit only ever moves earlier. A witness or an appliance not in the
// spec gets none.
func (b *witnessBook) recredit(spec *schema.Spec) {
	p, office := b.prior, b.since
	if p.name == "" || spec == nil {
		return
	}
	if a := spec.Appliance(p.name); a == nil || a.Role == schema.RoleWitness {
		return
	}
	at := office
	if !p.contact.IsZero() {
		pol := spec.Witness
		at = maxTime(p.contact, office.Add(time.Duration(pol.FenceAfter)+time.Duration(schema.FenceMargin(pol.FailoverAfter))-time.Duration(pol.FailoverAfter)))
	}
	if bound, ok := reportedBound(p, b.voters, b.configIndex, b.reports, b.term); ok && bound.Before(at) {
		at = bound
	}
	if !at.Before(office) {
		return
	}
	if c, ok := b.credited[p.name]; ok && !at.Before(c) {
		return
	}
	if b.credited == nil {
		b.credited = map[string]time.Time{}
	}
	b.credited[p.name] = at
	b.seen[p.name] = at
}

// lastRenewal is when the leader last counted appliance as renewed, and
// whether that was a renewal it received (not its taking office or first
// seeing the appliance).
func (b *witnessBook) lastRenewal(appliance string) (time.Time, bool) {
	base := b.since
	if c, ok := b.credited[appliance]; ok {
		base = c
	}
	if s, ok := b.seen[appliance]; ok && s.After(base) {
		base = s
	}
	if r, ok := b.renewals[appliance]; ok && !r.at.Before(base) {
		return r.at, true
	}
	return base, false
}

// reachable says whether appliance renewed within ReachableWindow of now;
// received says the renewal must be a received one.
func (b *witnessBook) reachable(appliance string, now time.Time, received bool) bool {
	last, renewed := b.lastRenewal(appliance)
	return (renewed || !received) && now.Sub(last) <= ReachableWindow
}

// setFenced records what an appliance reports fenced.
func (b *witnessBook) setFenced(appliance, share string, fenced bool) {
	if !fenced {
		delete(b.fenced[appliance], share)
		return
	}
	if b.fenced[appliance] == nil {
		b.fenced[appliance] = map[string]bool{}
	}
	b.fenced[appliance][share] = true
}

// record is the bookkeeping change a witness event implies once it is in
// the log: the book says what the log last said. A failover (which the
// FSM writes with the failover itself) ends the share's outage.
func (b *witnessBook) record(e store.WitnessEvent) {
	switch e.Event {
	case store.EventUnreachable:
		b.unreachable[e.Member] = true
	case store.EventReachable:
		b.unreachable[e.Member] = false
	case store.EventDegraded:
		b.degraded[e.Member] = true
	case store.EventRecovered:
		b.degraded[e.Member] = false
	case store.EventFenced:
		b.setFenced(e.Member, e.Share, true)
	case store.EventUnfenced:
		b.setFenced(e.Member, e.Share, false)
	case store.EventFailoverManual:
		b.manualLogged[e.Share] = true
	case store.EventFailoverBlocked:
		b.blockedLogged[e.Share] = true
	case store.EventFailover:
		delete(b.blockedLogged, e.Share)
	}
}

// note makes the bookkeeping changes of d that need no write, decided at
// now: the appliances first counted, and the outages that ended.
func (b *witnessBook) note(d witnessDecision, now time.Time) {
	for _, a := range d.Seen {
		if _, ok := b.seen[a]; !ok {
			b.seen[a] = now
		}
	}
	for _, share := range d.OutagesOver {
		delete(b.manualLogged, share)
		delete(b.blockedLogged, share)
	}
}

// witnessInput is everything decideWitness decides from.
type witnessInput struct {
	// State is the replicated state: the spec with the witness policy, the
	// failover entries, the appliances' fenced shares.
	*store.State
	// Book is the leader's bookkeeping; decideWitness does not change it.
	Book witnessBook
	// Now is the leader's time of the decision.
	Now time.Time
}

// witnessDecision is what the witness should do at one look.
type witnessDecision struct {
	// Seen are the appliances named for the first time this term: the
	// leader counts them as renewed from Now (witnessBook.note).
	Seen []string
	// OutagesOver are the shares whose active appliance renews again while
	// a once-per-outage event was written: a next outage is reported again
	// (witnessBook.note).
	OutagesOver []string
	// Events are the witness events to write, in order. Once one is in the
	// log the book records it (witnessBook.record); one that could not be
	// written is decided again at the next look.
	Events []store.WitnessEvent
	// Failovers are the shares due to fail over.
	Failovers []witnessFailover
}

// witnessFailover is a failover the decider found due.
type witnessFailover struct {
	// Share fails over from its active appliance From to its replica To.
	Share, From, To string
	// ExpectedEpoch is the share's epoch the failover was decided on: the
	// compare-and-set refuses it once the epoch moved.
	ExpectedEpoch uint64
	// After is the policy's failover_after, as written.
	After schema.Duration
	// Reason says why, with the numbers at the decision.
	Reason string
}

// decideWitness looks at every lease once. It is pure: the same input
// gives the same decision, and the input is not changed.
//
// For each storage appliance, in spec order: unreachable when it has not
// been counted as renewed within ReachableWindow, reachable again when it
// renews; degraded when its round trip passes degraded_latency, recovered
// once it is back at recoverFraction of it. Then what each appliance
// reports fenced or no longer fenced. Then, for each replicated share
// with failover auto or manual, in spec order, whose active appliance has
// not renewed for more than failover_after: with manual, one event per
// outage; with auto, a failover if the replica renews (a received
// renewal within ReachableWindow), else one blocked event per outage.
// Only transitions are written: an idle fleet gets an empty decision.
func decideWitness(in witnessInput) witnessDecision {
	var d witnessDecision
	st := in.State
	if st == nil || st.Spec == nil {
		return d
	}
	pol := st.Spec.Witness
	now, at := in.Now, in.Now.UTC()
	// A private copy of the first sights, so that an appliance named for
	// the first time counts from now within this decision too.
	b := in.Book
	b.seen = maps.Clone(b.seen)
	if b.seen == nil {
		b.seen = map[string]time.Time{}
	}
	see := func(appliance string) {
		if _, ok := b.seen[appliance]; !ok {
			b.seen[appliance] = now
			d.Seen = append(d.Seen, appliance)
		}
	}

	for _, a := range st.Spec.Appliances {
		if a.Role == schema.RoleWitness {
			continue
		}
		name := a.Name
		see(name)
		last, renewed := b.lastRenewal(name)
		age := now.Sub(last)
		reachable := age <= ReachableWindow
		switch {
		case !reachable && !b.unreachable[name]:
			d.Events = append(d.Events, store.WitnessEvent{At: at, Member: name, Event: store.EventUnreachable, Detail: fmt.Sprintf("%s has not renewed its lease for %s (> %s)", name, roundAge(age), ReachableWindow)})
		case reachable && renewed && b.unreachable[name]:
			d.Events = append(d.Events, store.WitnessEvent{At: at, Member: name, Event: store.EventReachable, Detail: name + " renews its lease again"})
		}
		rtt := b.renewals[name].rtt
		if !reachable || !renewed || rtt <= 0 {
			continue
		}
		limit := time.Duration(pol.DegradedLatency)
		switch {
		case rtt > limit && !b.degraded[name]:
			d.Events = append(d.Events, store.WitnessEvent{At: at, Member: name, Event: store.EventDegraded, Detail: fmt.Sprintf("%s's lease round trip took %s > degraded_latency %s", name, roundRTT(rtt), pol.DegradedLatency)})
		case float64(rtt) <= recoverFraction*float64(limit) && b.degraded[name]:
			d.Events = append(d.Events, store.WitnessEvent{At: at, Member: name, Event: store.EventRecovered, Detail: fmt.Sprintf("%s's lease round trip is %s again (degraded_latency %s)", name, roundRTT(rtt), pol.DegradedLatency)})
		}
	}
	d.Events = append(d.Events, fenceEvents(st, &b, at)...)

	for _, sh := range replicatedShares(st.Spec) {
		pl, _ := st.Place(sh)
		active, replica, epoch := pl.Active.Appliance, pl.Replica.Appliance, pl.Epoch
		see(active)
		see(replica)
		age := b.outage(active, now)
		if age <= time.Duration(pol.FailoverAfter) {
			if b.manualLogged[sh.Name] || b.blockedLogged[sh.Name] {
				d.OutagesOver = append(d.OutagesOver, sh.Name)
			}
			continue
		}
		why := failoverReason(active, age, pol.FailoverAfter)
		share := sh.Name
		switch {
		case sh.Failover == schema.FailoverManual:
			if !b.manualLogged[share] {
				d.Events = append(d.Events, store.WitnessEvent{At: at, Member: active, Share: share, Event: store.EventFailoverManual, Detail: fmt.Sprintf("%s; %s has failover: manual: run fleetctl failover %s --to %s", why, share, share, replica)})
			}
		case !b.reachable(replica, now, true):
			if !b.blockedLogged[share] {
				d.Events = append(d.Events, store.WitnessEvent{At: at, Member: active, Share: share, Event: store.EventFailoverBlocked, Detail: fmt.Sprintf("%s, but the replica %s is unreachable too; waiting for either", why, replica)})
			}
		default:
			d.Failovers = append(d.Failovers, witnessFailover{Share: share, From: active, To: replica, ExpectedEpoch: epoch, After: pol.FailoverAfter, Reason: why})
		}
	}
	return d
}

// fenceEvents compares what the appliances report fenced with what the
// witness log last said.
func fenceEvents(st *store.State, b *witnessBook, at time.Time) []store.WitnessEvent {
	var events []store.WitnessEvent
	names := make([]string, 0, len(st.Nodes)+len(b.fenced))
	for name := range st.Nodes {
		names = append(names, name)
	}
	for name := range b.fenced {
		if _, ok := st.Nodes[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		reported := st.Nodes[name].Fenced
		for _, share := range reported {
			if !b.fenced[name][share] {
				events = append(events, store.WitnessEvent{At: at, Member: name, Share: share, Event: store.EventFenced, Detail: fmt.Sprintf("%s made %s read-only: its lease lapsed (fence_after %s)", name, share, specFenceAfter(st))})
			}
		}
		for _, share := range slices.Sorted(maps.Keys(b.fenced[name])) {
			if slices.Contains(reported, share) {
				continue
			}
			detail := fmt.Sprintf("%s made %s writable again: its lease is renewed and the share's epoch did not move", name, share)
			if sh := specShare(st, share); sh != nil {
				if pl, _ := st.Place(sh); pl.Active.Appliance != name {
					detail = fmt.Sprintf("%s moved to %s (epoch %d) while %s was fenced; %s's copy stays read-only", share, pl.Active.Appliance, pl.Epoch, name, name)
				}
			}
			events = append(events, store.WitnessEvent{At: at, Member: name, Share: share, Event: store.EventUnfenced, Detail: detail})
		}
	}
	return events
}

// outage is how long appliance has gone unrenewed at now.
func (b *witnessBook) outage(appliance string, now time.Time) time.Duration {
	last, _ := b.lastRenewal(appliance)
	return now.Sub(last)
}

// confirm decides f again at now, just before it is committed, with the
// book as it is then (witness.mu held): a renewal counted since the
// decision cancels the failover. It returns the command to commit.
func (f witnessFailover) confirm(b *witnessBook, now time.Time) (store.FailoverShare, bool) {
	age := b.outage(f.From, now)
	if age <= time.Duration(f.After) {
		return store.FailoverShare{}, false
	}
	return store.FailoverShare{
		Share:         f.Share,
		From:          f.From,
		To:            f.To,
		ExpectedEpoch: f.ExpectedEpoch,
		Reason:        failoverReason(f.From, age, f.After),
		At:            now.UTC(),
	}, true
}

// failoverReason says why a share of active is due to fail over.
func failoverReason(active string, age time.Duration, after schema.Duration) string {
	return fmt.Sprintf("%s unreachable for %s > failover_after %s", active, roundAge(age), after)
}
