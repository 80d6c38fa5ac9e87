package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
)

// This file is the edge of the bound a new leader credits the old one
// from (docs/design.md, "A new leader credits the old one"):
//
//   - The leader answers a lease renewal only after a check round that
//     started after it received the renewal: it asks every other voter
//     whether its Raft term is still the leader's (POST /v1/witness/ack),
//     and the round succeeds once a majority of the voters, the leader
//     included, said yes. Each voter notes when it said yes (ackBook).
//     Rounds are coalesced: one at a time, at most one every ackPace, and
//     a renewal waits for the next round that starts after its receipt.
//   - Every voter, once it follows a new leader, reports to it the newest
//     yes it gave in any earlier term (POST /v1/witness/report), as an
//     age, which the leader turns into a time of its own clock no earlier
//     than the truth (reportedContact).
//
// hashicorp/raft's VerifyLeader is not used for the round: a heartbeat
// already in flight when the round starts also counts as a vote
// (replication.go, heartbeat → notifyAll), so its follower's contact may
// predate the renewal.

// ackPace is the least time between the starts of two check rounds: the
// rounds, and the requests they make, stay at most 1/ackPace a second
// however many appliances renew. A renewal's answer waits at most this
// plus a round; that does not age the lease, which counts from when the
// renewal was sent. 200 ms keeps a fleet of 50 at 5 rounds a second, 4
// requests each with 5 voters (at 50 ms it was 20: the leader's idle
// cost, scripts/bench-scale.sh).
const ackPace = 200 * time.Millisecond

// ackTimeout bounds one voter's answer in a round.
const ackTimeout = time.Second

// errNoQuorum is a check round that a majority of the voters did not
// answer with yes.
var errNoQuorum = errors.New("a majority of the voters did not confirm this leader's term")

// ackBook is this agent's record of the check rounds it confirmed: when it
// last said yes, and in which term. Yes is said only while this agent's
// Raft term is the round's, under mu, and a report is made only under mu
// with the term already past: so no yes of an earlier term can follow a
// report.
type ackBook struct {
	mu sync.Mutex
	// since is when this agent started: any yes an earlier run said was
	// before it.
	since time.Time
	// term, cfg and last are the term of the newest yes, the newest
	// configuration index confirmed in that term, and when it was said;
	// before is the same of the newest yes in any earlier term.
	term   uint64
	cfg    uint64
	last   time.Time
	before ackYes
}

// ackYes is a voter's newest yes before a term: when, in which term, and
// the newest configuration index it confirmed in that term. term is 0
// when it said none in this run (at is then its start).
type ackYes struct {
	at   time.Time
	term uint64
	cfg  uint64
}

// ack says yes to a round of term, under the configuration at index cfg,
// at now if current (this agent's Raft term) is term.
func (a *ackBook) ack(term, cfg uint64, current func() uint64, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if current() != term {
		return false
	}
	if term != a.term {
		if a.last.After(a.before.at) {
			a.before = ackYes{at: a.last, term: a.term, cfg: a.cfg}
		}
		a.term, a.cfg = term, 0
	}
	a.last = maxTime(a.last, now)
	a.cfg = max(a.cfg, cfg)
	return true
}

// contactBefore is the newest yes this agent said in a term before term
// (its start if later: an earlier run's yeses are before it), if its Raft
// term (current) is term; false otherwise. Yeses are said in increasing
// terms, under mu, only in the current term: once the term is past, no
// yes of an earlier term can follow.
func (a *ackBook) contactBefore(term uint64, current func() uint64) (ackYes, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if current() != term || a.term > term {
		return ackYes{}, false
	}
	y := a.before
	if a.term < term && a.last.After(y.at) {
		y = ackYes{at: a.last, term: a.term, cfg: a.cfg}
	}
	if !y.at.After(a.since) {
		y = ackYes{at: a.since}
	}
	return y, true
}

// ackRequest asks a voter to confirm the leader's term, under the
// leader's configuration at ConfigIndex.
type ackRequest struct {
	Term        uint64 `json:"term"`
	ConfigIndex uint64 `json:"config_index"`
}

// reportRequest is a voter's report to the leader of its term.
type reportRequest struct {
	Reporter string `json:"reporter"`
	Term     uint64 `json:"term"`
	// AgeMillis is how long before sending the voter last confirmed a
	// round of an earlier term (or started).
	AgeMillis float64 `json:"age_ms"`
	// YesTerm and YesConfigIndex are the term of that confirmation and
	// the newest configuration index it confirmed in it (0: none since
	// the voter started).
	YesTerm        uint64 `json:"yes_term"`
	YesConfigIndex uint64 `json:"yes_config_index"`
}

// handleWitnessAck confirms a check round: yes (200) if this agent's Raft
// term is the round's.
func (n *Node) handleWitnessAck(w http.ResponseWriter, r *http.Request) {
	var req ackRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !n.acks.ack(req.Term, req.ConfigIndex, n.raft.CurrentTerm, time.Now()) {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: fmt.Sprintf("%s is not in term %d", n.cfg.Name, req.Term)})
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// handleWitnessReport takes a voter's report, on the leader of its term.
func (n *Node) handleWitnessReport(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var req reportRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !requireSelf(w, r, req.Reporter, "reports for itself") {
		return
	}
	if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != req.Term {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: fmt.Sprintf("%s does not lead term %d", n.cfg.Name, req.Term)})
		return
	}
	age := time.Duration(req.AgeMillis * float64(time.Millisecond))
	n.wit.report(req.Reporter, priorReport{term: req.Term, at: reportedContact(now, age), yesTerm: req.YesTerm, yesCfg: req.YesConfigIndex}, n.fsm.State().Spec)
	writeJSON(w, http.StatusOK, struct{}{})
}

// reporter remembers the leader and term this agent last reported to.
type reporter struct {
	mu       sync.Mutex
	leader   string
	term     uint64
	inflight bool
}

// reportPrior reports, once per leader and term, this agent's newest
// confirmation of an earlier term to the leader it now follows. It runs
// with notePrior; the request runs in the background, one at a time.
func (n *Node) reportPrior(ctx context.Context) {
	_, id := n.raft.LeaderWithID()
	leader, term := string(id), n.raft.CurrentTerm()
	if leader == "" || leader == n.cfg.Name {
		return
	}
	rp := &n.reporter
	rp.mu.Lock()
	if rp.inflight || (rp.leader == leader && rp.term == term) {
		rp.mu.Unlock()
		return
	}
	rp.inflight = true
	rp.mu.Unlock()
	n.goLoop(func() {
		err := n.sendReport(ctx, leader, term)
		rp.mu.Lock()
		defer rp.mu.Unlock()
		rp.inflight = false
		if olderAgent(err) {
			// A leader from before the reports (a rolling upgrade) will
			// never take one: not asked again in its term. Without the
			// report it gives no credit, which is the safe side.
			n.log.Debug("the leader does not take reports (an older agent); not reporting in this term", "leader", leader, "term", term)
			err = nil
		}
		if err != nil {
			n.log.Debug("could not report to the leader yet; retrying", "leader", leader, "term", term, "err", err)
			return
		}
		rp.leader, rp.term = leader, term
	})
}

// sendReport sends one report to leader for term.
func (n *Node) sendReport(ctx context.Context, leader string, term uint64) error {
	y, ok := n.acks.contactBefore(term, n.raft.CurrentTerm)
	if !ok {
		return fmt.Errorf("no longer in term %d", term)
	}
	hc, addr, err := n.memberClient(leader, peerQuick)
	if err != nil {
		return fmt.Errorf("report to %s: %w", leader, err)
	}
	ctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	age := time.Since(y.at)
	req := reportRequest{Reporter: n.cfg.Name, Term: term, AgeMillis: float64(age.Microseconds()) / 1000, YesTerm: y.term, YesConfigIndex: y.cfg}
	if err := client.PostJSON(ctx, hc, "https://"+addr+"/v1/witness/report", req, &struct{}{}); err != nil {
		return fmt.Errorf("report to %s: %w", leader, err)
	}
	return nil
}

// ackRounds coalesces the leader's check rounds: renewals join the next
// round, which starts after the one under way has ended.
type ackRounds struct {
	mu     sync.Mutex
	next   *ackRound
	kick   chan struct{}
	closed bool // the loop has ended: no round will run
}

// errRoundsStopped answers a renewal once the agent is stopping.
var errRoundsStopped = errors.New("the agent is stopping")

// ackRound is one check round; done is closed when err is set. waiting
// counts the renewals that joined it.
type ackRound struct {
	done    chan struct{}
	err     error
	waiting int
}

// confirmed waits for a check round that starts after this call (so after
// the renewal it answers was received) and reports whether it confirmed
// this leader's term.
func (n *Node) confirmed(ctx context.Context) error { return n.rounds.wait(ctx) }

// wait joins the next round to start and waits for its end.
func (a *ackRounds) wait(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errRoundsStopped
	}
	if a.next == nil {
		a.next = &ackRound{done: make(chan struct{})}
	}
	r := a.next
	r.waiting++
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ackLoop runs the check rounds renewals wait for, one at a time and at
// most one every ackPace, until ctx ends.
func (n *Node) ackLoop(ctx context.Context) { n.rounds.loop(ctx, n.ackRound) }

// loop runs round for the renewals waiting, one round at a time and at
// most one every ackPace, until ctx ends; then it fails the renewals
// still waiting and any later one.
func (a *ackRounds) loop(ctx context.Context, round func(context.Context) error) {
	defer func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.closed = true
		if a.next != nil {
			a.next.err = errRoundsStopped
			close(a.next.done)
			a.next = nil
		}
	}()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		}
		if wait := ackPace - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		a.mu.Lock()
		r := a.next
		a.next = nil
		a.mu.Unlock()
		if r == nil {
			continue
		}
		last = time.Now()
		r.err = round(ctx)
		close(r.done)
	}
}

// ackRound asks every voter whether its term is this leader's, and
// returns nil once a majority of the voters (this one included) said yes.
func (n *Node) ackRound(ctx context.Context) error {
	// The term, then the state, then the term again: hashicorp/raft steps
	// down by setting the state to follower before the new term, so a
	// leader state seen between two reads of the same term is the
	// leadership of that term (a round must never ask the voters to
	// confirm a term this node does not lead).
	term := n.raft.CurrentTerm()
	if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return raft.ErrNotLeader
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("check round: %w", err)
	}
	cfg := f.Index()
	var others []raft.Server
	voters, self := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == n.cfg.Name {
			self = true
			continue
		}
		others = append(others, s)
	}
	if !self || !n.acks.ack(term, cfg, n.raft.CurrentTerm, time.Now()) {
		return raft.ErrNotLeader
	}
	need := voters/2 + 1 - 1
	if need <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	yes := make(chan bool, len(others))
	for _, s := range others {
		go func(s raft.Server) {
			hc, err := n.peerClient(string(s.ID), string(s.Address), peerQuick)
			if err == nil {
				err = client.PostJSON(ctx, hc, "https://"+string(s.Address)+"/v1/witness/ack", ackRequest{Term: term, ConfigIndex: cfg}, &struct{}{})
			}
			if olderAgent(err) {
				// An agent from before the check rounds (a rolling
				// upgrade): counted as yes, so renewals go on. Its
				// report, once upgraded, is no earlier than its start,
				// which is after this answer (docs/design.md).
				err = nil
			}
			if err != nil {
				n.log.Debug("a voter did not confirm the check round", "voter", s.ID, "term", term, "err", err)
			}
			yes <- err == nil
		}(s)
	}
	for range others {
		if <-yes {
			if need--; need == 0 {
				return nil
			}
		}
	}
	return errNoQuorum
}

// office is what this node knows as it takes office in Raft term term:
// the voters of its configuration, and its own report (its newest
// confirmation of an earlier term), which it adds to the witness's.
func (n *Node) office(term uint64) leadTerm {
	o := leadTerm{term: term}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		o.configIndex = f.Index()
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				o.voters = append(o.voters, string(s.ID))
			}
		}
	}
	if y, ok := n.acks.contactBefore(term, n.raft.CurrentTerm); ok {
		n.wit.report(n.cfg.Name, priorReport{term: term, at: y.at, yesTerm: y.term, yesCfg: y.cfg}, nil)
	}
	return o
}

// olderAgent says whether err is the answer of an agent that does not
// know the check rounds: its API has no such route.
func olderAgent(err error) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}
