package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/schema"
)

// Membership changes (a node joining, an operator removing one) are decided
// and made on the leader one at a time: the leader takes Node.memberLock,
// reads the configuration, plans the changes with planJoin or planRemove
// (pure functions of the configuration), and makes them before the next
// request may read the configuration. Without the lock, nine nodes joining
// at once each counted the voters before any other's AddVoter had landed,
// and all nine became voters.
//
// The rule the plans follow:
//   - a fleet of m members keeps voterTarget(m) voters: all of them up to
//     MaxVoters, but an odd number (1, 3, 5), because a fourth voter
//     raises the quorum without surviving one more failure, and a second
//     one makes either loss fatal where one voter makes only its own loss
//     fatal;
//   - a joining node becomes a voter while the fleet has fewer than its
//     target, a non-voter otherwise, and non-voters are promoted to reach
//     the target (the fifth member's join promotes the fourth);
//   - a member with the joining node's name or address is stale (the same
//     appliance with a new data dir or address) and is removed first;
//   - removing a member promotes non-voters (those in contact with the
//     leader first, then by name) or demotes voters other than the leader
//     (those out of contact first, then the last by name) to the target.

// voterTarget is how many voters a fleet of members members keeps: as many
// as there are members, at most maxVoters, and odd.
func voterTarget(members, maxVoters int) int {
	t := min(members, maxVoters)
	if t%2 == 0 {
		t--
	}
	return max(t, 1)
}

// memberOp is one kind of Raft configuration change.
type memberOp int

const (
	// opRemove removes a member.
	opRemove memberOp = iota + 1
	// opAddVoter adds a new member as a voter.
	opAddVoter
	// opAddNonvoter adds a new member as a non-voter.
	opAddNonvoter
	// opPromote makes an existing non-voter a voter (Raft's AddVoter on a
	// member that is already there).
	opPromote
	// opDemote makes an existing voter a non-voter.
	opDemote
)

// memberStep is one configuration change of a membership plan.
type memberStep struct {
	Op      memberOp
	ID      raft.ServerID
	Address raft.ServerAddress
}

// String describes the step for logs and errors.
func (s memberStep) String() string {
	switch s.Op {
	case opRemove:
		return fmt.Sprintf("remove %s", s.ID)
	case opAddVoter:
		return fmt.Sprintf("add %s at %s as a voter", s.ID, s.Address)
	case opAddNonvoter:
		return fmt.Sprintf("add %s at %s as a non-voter", s.ID, s.Address)
	case opPromote:
		return fmt.Sprintf("promote %s to voter", s.ID)
	case opDemote:
		return fmt.Sprintf("demote %s to non-voter", s.ID)
	}
	return fmt.Sprintf("unknown step %d for %s", s.Op, s.ID)
}

// joinPlan is what the leader does for a node that asks to join.
type joinPlan struct {
	// Steps are the configuration changes, in order; none when the node is
	// already a member at its address.
	Steps []memberStep
	// Voter is the joining node's suffrage once the steps are made.
	Voter bool
}

// planJoin plans adding the node name at addr to config, for a fleet that
// keeps maxVoters voters.
func planJoin(config raft.Configuration, name raft.ServerID, addr raft.ServerAddress, maxVoters int) joinPlan {
	var plan joinPlan
	var kept []raft.Server
	already := false
	for _, s := range config.Servers {
		switch {
		case s.ID == name && s.Address == addr:
			already = true
			kept = append(kept, s)
		case s.ID == name || s.Address == addr:
			// A stale member: the same appliance with a new data dir or
			// address. Removed before adding, as rqlite and Consul do.
			plan.Steps = append(plan.Steps, memberStep{Op: opRemove, ID: s.ID, Address: s.Address})
		default:
			kept = append(kept, s)
		}
	}
	if !already {
		joiner := raft.Server{ID: name, Address: addr, Suffrage: raft.Nonvoter}
		step := memberStep{Op: opAddNonvoter, ID: name, Address: addr}
		// The joiner takes a free voter slot before any existing non-voter.
		if countVoters(kept) < voterTarget(len(kept)+1, maxVoters) {
			joiner.Suffrage, step.Op = raft.Voter, opAddVoter
		}
		kept = append(kept, joiner)
		plan.Steps = append(plan.Steps, step)
	}
	// A join only ever adds voters: a fleet above its target (made by an
	// older rule) is brought down by removals, never by a join.
	promotions := balanceVoters(kept, voterTarget(len(kept), maxVoters), "", nil)
	promotions = slices.DeleteFunc(promotions, func(s memberStep) bool { return s.Op == opDemote })
	plan.Steps = append(plan.Steps, promotions...)
	plan.Voter = slices.ContainsFunc(kept, func(s raft.Server) bool { return s.ID == name && s.Suffrage == raft.Voter }) ||
		slices.ContainsFunc(promotions, func(p memberStep) bool { return p.ID == name })
	return plan
}

// planRemove plans removing the member name from config, for a fleet that
// keeps maxVoters voters and is led by leader. preferred says which
// non-voters to promote first (those in contact with a leader); nil prefers
// none. found is false when name is not a member.
func planRemove(config raft.Configuration, name, leader raft.ServerID, maxVoters int, preferred func(raft.ServerID) bool) (steps []memberStep, found bool) {
	var kept []raft.Server
	for _, s := range config.Servers {
		if s.ID == name {
			found = true
			continue
		}
		kept = append(kept, s)
	}
	if !found {
		return nil, false
	}
	remove := memberStep{Op: opRemove, ID: name}
	promotions := balanceVoters(kept, voterTarget(len(kept), maxVoters), leader, preferred)
	if name == leader {
		// A leader that removes itself steps down once the change commits
		// and can promote no one after it: it promotes first, so the
		// voters exceed the cap by one until its own removal commits.
		return append(promotions, remove), true
	}
	// Otherwise remove first: the quorum never grows by a member that may
	// not have caught up while the one leaving may already be gone.
	return append([]memberStep{remove}, promotions...), true
}

// balanceVoters returns the promotions or demotions that bring servers to
// target voters. Non-voters in contact (preferred) are promoted first, then
// by name; voters out of contact are demoted first, then the last by name,
// never leader.
func balanceVoters(servers []raft.Server, target int, leader raft.ServerID, preferred func(raft.ServerID) bool) []memberStep {
	inContact := func(id raft.ServerID) bool { return preferred != nil && preferred(id) }
	var steps []memberStep
	switch voters := countVoters(servers); {
	case voters < target:
		var candidates []raft.Server
		for _, s := range servers {
			if s.Suffrage != raft.Voter {
				candidates = append(candidates, s)
			}
		}
		slices.SortFunc(candidates, func(a, b raft.Server) int {
			if ia, ib := inContact(a.ID), inContact(b.ID); ia != ib {
				if ia {
					return -1
				}
				return 1
			}
			return strings.Compare(string(a.ID), string(b.ID))
		})
		for _, s := range candidates[:min(target-voters, len(candidates))] {
			steps = append(steps, memberStep{Op: opPromote, ID: s.ID, Address: s.Address})
		}
	case voters > target:
		var candidates []raft.Server
		for _, s := range servers {
			if s.Suffrage == raft.Voter && s.ID != leader {
				candidates = append(candidates, s)
			}
		}
		slices.SortFunc(candidates, func(a, b raft.Server) int {
			if ia, ib := inContact(a.ID), inContact(b.ID); ia != ib {
				if ib {
					return -1
				}
				return 1
			}
			return strings.Compare(string(b.ID), string(a.ID))
		})
		for _, s := range candidates[:min(voters-target, len(candidates))] {
			steps = append(steps, memberStep{Op: opDemote, ID: s.ID, Address: s.Address})
		}
	}
	return steps
}

// countVoters counts the voters among servers.
func countVoters(servers []raft.Server) int {
	k := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			k++
		}
	}
	return k
}

// errConfigChanged is Raft's refusal of a change whose prevIndex is not the
// latest configuration's index. Raft returns it as a plain formatted error,
// so it is recognised by its text.
const errConfigChanged = "configuration changed since"

// maxPlanAttempts bounds how often a membership change is planned again
// after Raft refused a step because the configuration had changed.
const maxPlanAttempts = 3

// lockMembers takes the leader's membership lock, or gives up when ctx ends
// (the requester stopped waiting). The returned func releases it.
func (n *Node) lockMembers(ctx context.Context) (func(), error) {
	select {
	case n.memberLock <- struct{}{}:
		return func() { <-n.memberLock }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another membership change: %w", ctx.Err())
	}
}

// changeMembers plans with plan against the current configuration and
// makes the steps, holding the membership lock. When Raft refuses a step
// because the configuration changed under it, it plans again from the new
// configuration (the plans are idempotent: steps already made are not
// planned again).
func (n *Node) changeMembers(ctx context.Context, plan func(raft.Configuration) ([]memberStep, error)) error {
	unlock, err := n.lockMembers(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		if n.raft.State() != raft.Leader || !n.leaderReady.Load() {
			return fmt.Errorf("plan a membership change: %w", raft.ErrNotLeader)
		}
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return fmt.Errorf("read the configuration: %w", err)
		}
		steps, err := plan(f.Configuration())
		if err != nil {
			return err
		}
		err = n.makeSteps(steps)
		if err == nil || !strings.Contains(err.Error(), errConfigChanged) || attempt == maxPlanAttempts {
			return err
		}
		n.log.Warn("the configuration changed during a membership change; planning again", "err", err, "attempt", attempt)
	}
}

// makeSteps makes the configuration changes in order, each on the
// configuration the previous one made (its index as prevIndex), so nothing
// can slip in between. The first step has no index to give: in raft
// v1.7.3 GetConfiguration's Index is always 0, so the membership lock is
// what keeps the configuration the plan was made from current.
func (n *Node) makeSteps(steps []memberStep) error {
	var prev uint64
	for _, s := range steps {
		var f raft.IndexFuture
		switch s.Op {
		case opRemove:
			f = n.raft.RemoveServer(s.ID, prev, 10*time.Second)
		case opAddVoter, opPromote:
			f = n.raft.AddVoter(s.ID, s.Address, prev, 10*time.Second)
		case opAddNonvoter:
			f = n.raft.AddNonvoter(s.ID, s.Address, prev, 10*time.Second)
		case opDemote:
			f = n.raft.DemoteVoter(s.ID, prev, 10*time.Second)
		default:
			return fmt.Errorf("%s: no such step", s)
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		prev = f.Index()
		n.log.Info("membership changed", "step", s.String())
	}
	return nil
}

// writeMemberError answers a failed membership change. Losing leadership or
// the lock wait are worth a retry, which the joining agent and the CLI do
// on CodeNoLeader.
func writeMemberError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), errConfigChanged):
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: err.Error() + "; retry"})
	default:
		writeApplyError(w, err)
	}
}

func (n *Node) handleAddMember(w http.ResponseWriter, r *http.Request) {
	var req client.MemberRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !requireSelf(w, r, req.Name, "adds itself") {
		return
	}
	// Only a certificate a join recorded lately adds a member: a removed
	// member's certificate never brings it back.
	if st := n.fsm.State(); len(st.Certs) > 0 {
		rec, ok := st.Certs[pki.Fingerprint(r.TLS.PeerCertificates[0])]
		if !ok || time.Since(rec.IssuedAt) > joinWindow {
			writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeForbidden, Message: fmt.Sprintf("%s's certificate was not issued by a join in the last %s; join again with a new data dir and a join token", req.Name, joinWindow)})
			return
		}
	}
	var voter bool
	err := n.changeMembers(r.Context(), func(config raft.Configuration) ([]memberStep, error) {
		p := planJoin(config, raft.ServerID(req.Name), raft.ServerAddress(req.Address), n.cfg.MaxVoters)
		voter = p.Voter
		return p.Steps, nil
	})
	if err != nil {
		writeMemberError(w, fmt.Errorf("add member %s: %w", req.Name, err))
		return
	}
	n.log.Info("member joined", "name", req.Name, "address", req.Address, "voter", voter)
	writeJSON(w, http.StatusOK, client.MemberResponse{Name: req.Name, Voter: voter})
}

// errNoMember says that a member to remove is not in the configuration.
var errNoMember = errors.New("no such member")

func (n *Node) handleRemoveMember(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !n.isMember(name) {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("no member named %q", name)})
		return
	}
	// A member that answers, or one that holds the writable copy of a
	// share, is removed only when forced: the first is not lost, and the
	// second would strand what was written there.
	risks := n.removalRisks(r.Context(), name)
	force := r.URL.Query().Get("force") != ""
	if len(risks) > 0 && !force {
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict,
			Message: fmt.Sprintf("%s was not removed: %s. Do that first, or remove it anyway with --force", name, strings.Join(risks, "; "))})
		return
	}
	// Which members answer is asked before the lock is taken: it only
	// orders the candidates for promotion and demotion, and pings may
	// take a second.
	inContact := n.membersInContact(r.Context())
	err := n.changeMembers(r.Context(), func(config raft.Configuration) ([]memberStep, error) {
		steps, found := planRemove(config, raft.ServerID(name), raft.ServerID(n.cfg.Name), n.cfg.MaxVoters, func(id raft.ServerID) bool { return inContact[id] })
		if !found {
			return nil, errNoMember
		}
		return steps, nil
	})
	switch {
	case errors.Is(err, errNoMember):
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("no member named %q", name)})
		return
	case err != nil:
		writeMemberError(w, fmt.Errorf("remove member %s: %w", name, err))
		return
	}
	n.log.Info("removed member", "name", name, "by", userOf(r))
	// Its certificates and every join token it may have seen stop
	// working. A leader that removed itself is no longer the leader: its
	// successor forgets its certificates (sweepCerts).
	if name != n.cfg.Name {
		if err := n.forgetNode(name, userOf(r)); err != nil {
			writeMemberError(w, fmt.Errorf("%s was removed, but revoking its certificates failed (the leader retries within %s): %w", name, joinWindow, err))
			return
		}
	}
	writeJSON(w, http.StatusOK, client.MemberResponse{Name: name, Warnings: risks})
}

// removalRisks says why removing the member name would lose something:
// it answers (it is not gone: stop it first), or the fleet says it holds
// the writable copy of a share (switch the share over first).
func (n *Node) removalRisks(ctx context.Context, name string) []string {
	var out []string
	if addr, err := n.memberAddr(name); err == nil {
		if p := n.pingAll(ctx, []raft.Server{{ID: raft.ServerID(name), Address: raft.ServerAddress(addr)}})[raft.ServerID(name)]; p.err == nil {
			out = append(out, fmt.Sprintf("%s answers (round trip %s): stop its agent first", name, roundRTT(p.rtt)))
		}
	}
	st := n.fsm.State()
	if st.Spec == nil {
		return out
	}
	for i := range st.Spec.Shares {
		sh := &st.Spec.Shares[i]
		if sh.State == schema.StateAbsent {
			continue
		}
		pl, _ := st.Place(sh)
		if pl.Active.Appliance != name {
			continue
		}
		if sh.Replication == nil {
			out = append(out, fmt.Sprintf("%s holds share %s, which is not replicated: its data stays on %s, which the fleet no longer manages", name, sh.Name, name))
			continue
		}
		out = append(out, fmt.Sprintf("%s is active for share %s: switch it over first with 'fleetctl failover %s --to %s'", name, sh.Name, sh.Name, pl.Replica.Appliance))
	}
	return out
}

// membersInContact pings the other members and returns those that answer
// and heard from a leader within the last 5 s (as status calls a member
// healthy): the non-voters to promote first and the voters to demote last.
func (n *Node) membersInContact(ctx context.Context) map[raft.ServerID]bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var others []raft.Server
	for _, s := range f.Configuration().Servers {
		if string(s.ID) != n.cfg.Name {
			others = append(others, s)
		}
	}
	if len(others) == 0 {
		return nil
	}
	out := map[raft.ServerID]bool{}
	for id, p := range n.pingAll(ctx, others) {
		out[id] = p.err == nil && p.resp.LastContactMS >= 0 && p.resp.LastContactMS <= 5000
	}
	return out
}
