package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
)

// fleetConfig makes a Raft configuration from "name" (a voter) and
// "name~" (a non-voter) entries; each member's address is name:1.
func fleetConfig(members ...string) raft.Configuration {
	var c raft.Configuration
	for _, m := range members {
		s := raft.Server{Suffrage: raft.Voter}
		if name, ok := strings.CutSuffix(m, "~"); ok {
			m, s.Suffrage = name, raft.Nonvoter
		}
		s.ID, s.Address = raft.ServerID(m), raft.ServerAddress(m+":1")
		c.Servers = append(c.Servers, s)
	}
	return c
}

// describeSteps writes steps as "remove a, add b voter, add c nonvoter,
// promote d" for comparing with a table.
func describeSteps(steps []memberStep) string {
	var out []string
	for _, s := range steps {
		switch s.Op {
		case opRemove:
			out = append(out, "remove "+string(s.ID))
		case opAddVoter:
			out = append(out, fmt.Sprintf("add %s@%s voter", s.ID, s.Address))
		case opAddNonvoter:
			out = append(out, fmt.Sprintf("add %s@%s nonvoter", s.ID, s.Address))
		case opPromote:
			out = append(out, "promote "+string(s.ID))
		case opDemote:
			out = append(out, "demote "+string(s.ID))
		default:
			out = append(out, s.String())
		}
	}
	return strings.Join(out, ", ")
}

func TestPlanJoin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		config    raft.Configuration
		join      string // name@address
		maxVoters int
		steps     string
		voter     bool
	}{
		{name: "second appliance is a non-voter: one voter survives more than two", config: fleetConfig("n1"), join: "n2@n2:1", maxVoters: 5,
			steps: "add n2@n2:1 nonvoter"},
		{name: "the third appliance makes the second a voter", config: fleetConfig("n1", "n2~"), join: "n3@n3:1", maxVoters: 5,
			steps: "add n3@n3:1 voter, promote n2", voter: true},
		{name: "the fourth is a non-voter", config: fleetConfig("n1", "n2", "n3"), join: "n4@n4:1", maxVoters: 5,
			steps: "add n4@n4:1 nonvoter"},
		{name: "the fifth makes the fourth a voter", config: fleetConfig("n1", "n2", "n3", "n4~"), join: "n5@n5:1", maxVoters: 5,
			steps: "add n5@n5:1 voter, promote n4", voter: true},
		{name: "fifth voter", config: fleetConfig("n1", "n2", "n3", "n4"), join: "n5@n5:1", maxVoters: 5,
			steps: "add n5@n5:1 voter", voter: true},
		{name: "beyond the cap a non-voter", config: fleetConfig("n1", "n2", "n3", "n4", "n5"), join: "n6@n6:1", maxVoters: 5,
			steps: "add n6@n6:1 nonvoter"},
		{name: "cap of two", config: fleetConfig("n1", "n2"), join: "n3@n3:1", maxVoters: 2,
			steps: "add n3@n3:1 nonvoter"},
		{name: "already a voter at its address", config: fleetConfig("n1", "n2"), join: "n2@n2:1", maxVoters: 5,
			steps: "", voter: true},
		{name: "already a non-voter at its address", config: fleetConfig("n1", "n2", "n3~"), join: "n3@n3:1", maxVoters: 2,
			steps: ""},
		{name: "stale voter at another address takes its slot back", config: fleetConfig("n1", "n2", "n3", "n4~"), join: "n2@new:1", maxVoters: 3,
			steps: "remove n2, add n2@new:1 voter", voter: true},
		{name: "stale non-voter at another address stays a non-voter", config: fleetConfig("n1", "n2", "n3~"), join: "n3@new:1", maxVoters: 2,
			steps: "remove n3, add n3@new:1 nonvoter"},
		{name: "another appliance at the address is stale", config: fleetConfig("n1", "n3", "old"), join: "n2@old:1", maxVoters: 5,
			steps: "remove old, add n2@old:1 voter", voter: true},
		{name: "two stale voters free two slots: the joiner takes one, a non-voter the other",
			config: fleetConfig("n1", "n2", "n3", "n4~", "n5~"), join: "n2@n3:1", maxVoters: 3,
			steps: "remove n2, remove n3, add n2@n3:1 voter, promote n4", voter: true},
		{name: "a free slot left by an earlier change is filled", config: fleetConfig("n1", "n3~", "n2~"), join: "n4@n4:1", maxVoters: 3,
			steps: "add n4@n4:1 voter, promote n2", voter: true},
		{name: "members whose slots are free are promoted when one asks again", config: fleetConfig("n1", "n2~", "n3~"), join: "n3@n3:1", maxVoters: 3,
			steps: "promote n2, promote n3", voter: true},
		{name: "a join never demotes: a fleet above its target stays", config: fleetConfig("n1", "n2", "n3", "n4"), join: "n4@n4:1", maxVoters: 5,
			steps: "", voter: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, addr, _ := strings.Cut(tc.join, "@")
			got := planJoin(tc.config, raft.ServerID(name), raft.ServerAddress(addr), tc.maxVoters)
			if d := describeSteps(got.Steps); d != tc.steps || got.Voter != tc.voter {
				t.Fatalf("planJoin(%s, %s, max %d):\nwant steps %q, voter %v\n got steps %q, voter %v",
					describeConfig(tc.config.Servers), tc.join, tc.maxVoters, tc.steps, tc.voter, d, got.Voter)
			}
		})
	}
}

func TestPlanRemove(t *testing.T) {
	for _, tc := range []struct {
		name      string
		config    raft.Configuration
		remove    string
		leader    string
		maxVoters int
		inContact []string
		steps     string
		found     bool
	}{
		{name: "a voter: the first non-voter by name is promoted", config: fleetConfig("n1", "n2", "n3", "n5~", "n4~"), remove: "n2", leader: "n1", maxVoters: 3,
			steps: "remove n2, promote n4", found: true},
		{name: "a voter: a non-voter in contact is promoted first", config: fleetConfig("n1", "n2", "n3", "n4~", "n5~"), remove: "n2", leader: "n1", maxVoters: 3,
			inContact: []string{"n5"}, steps: "remove n2, promote n5", found: true},
		{name: "a voter without non-voters: two voters become one, never the leader demoted", config: fleetConfig("n1", "n2", "n3"), remove: "n3", leader: "n1", maxVoters: 5,
			steps: "remove n3, demote n2", found: true},
		{name: "five voters lose one: a voter out of contact is demoted first", config: fleetConfig("n1", "n2", "n3", "n4", "n5"), remove: "n5", leader: "n1", maxVoters: 5,
			inContact: []string{"n2", "n4"}, steps: "remove n5, demote n3", found: true},
		{name: "a non-voter", config: fleetConfig("n1", "n2", "n3", "n4~"), remove: "n4", leader: "n1", maxVoters: 3,
			steps: "remove n4", found: true},
		{name: "the leader promotes before it removes itself", config: fleetConfig("n1", "n2", "n3", "n4~"), remove: "n1", leader: "n1", maxVoters: 3,
			steps: "promote n4, remove n1", found: true},
		{name: "not a member", config: fleetConfig("n1", "n2"), remove: "n9", leader: "n1", maxVoters: 5,
			steps: "", found: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, found := planRemove(tc.config, raft.ServerID(tc.remove), raft.ServerID(tc.leader), tc.maxVoters,
				func(id raft.ServerID) bool { return slices.Contains(tc.inContact, string(id)) })
			if d := describeSteps(steps); d != tc.steps || found != tc.found {
				t.Fatalf("planRemove(%s, %s, leader %s, max %d, in contact %v):\nwant steps %q, found %v\n got steps %q, found %v",
					describeConfig(tc.config.Servers), tc.remove, tc.leader, tc.maxVoters, tc.inContact, tc.steps, tc.found, d, found)
			}
		})
	}
}

// stormTimeout bounds the waits of TestNodeJoinStormKeepsVoterCap: nine
// agents joining at once under the race detector on a busy 2-core machine
// take longer than the usual waitTimeout allows.
const stormTimeout = 60 * time.Second

// waitUntilWithin is waitUntil with its own bound.
func waitUntilWithin(t testing.TB, limit time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", limit, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// suffrages counts the voters and non-voters among servers.
func suffrages(servers []raft.Server) (voters, nonVoters int) {
	voters = countVoters(servers)
	return voters, len(servers) - voters
}

// describeSuffrages writes servers as sorted "name (suffrage)" entries,
// without addresses, for comparing configurations.
func describeSuffrages(servers []raft.Server) string {
	var out []string
	for _, s := range servers {
		out = append(out, fmt.Sprintf("%s (%s)", s.ID, s.Suffrage))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// waitConfig waits until every one of nodes has the members of want with
// the same suffrage.
func waitConfig(t testing.TB, nodes []*Node, want []raft.Server) {
	t.Helper()
	for _, n := range nodes {
		waitUntilWithin(t, stormTimeout, fmt.Sprintf("%s to have the configuration %s", n.Name(), describeSuffrages(want)), func() (bool, string) {
			got := describeSuffrages(configOf(n))
			return got == describeSuffrages(want), got
		})
	}
}

// wantSuffrages fails the test unless servers has voters voters and
// nonVoters non-voters.
func wantSuffrages(t testing.TB, when string, servers []raft.Server, voters, nonVoters int) {
	t.Helper()
	if v, nv := suffrages(servers); v != voters || nv != nonVoters {
		t.Fatalf("%s: want %d voters and %d non-voters, got %d and %d: %s", when, voters, nonVoters, v, nv, describeConfig(servers))
	}
}

// TestNodeJoinStormKeepsVoterCap is a site powering up after an outage:
// eight appliances ask to join the same moment. The leader adds them one at
// a time, so the fleet ends with MaxVoters voters, not nine; and removing a
// voter promotes a non-voter in its place.
func TestNodeJoinStormKeepsVoterCap(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, bootstrapConfig(t, "n1"))
	var cfgs []Config
	for i := 2; i <= 9; i++ {
		cfgs = append(cfgs, joinConfig(t, fmt.Sprintf("n%d", i), n1))
	}

	// Every joiner waits for goCh to close, so all eight start together.
	ctx, cancel := context.WithTimeout(t.Context(), stormTimeout)
	defer cancel()
	goCh := make(chan struct{})
	joined := make([]*Node, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-goCh
			joined[i], errs[i] = tryStart(t, ctx, cfg)
		}()
	}
	close(goCh)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %s together with seven others: %v", cfgs[i].Name, err)
		}
	}
	nodes := append([]*Node{n1}, joined...)
	// Every join has returned, so the leader's configuration is final; the
	// others may still be catching up with it.
	leader := readyLeader(t, nodes)
	final := configOf(leader)
	if len(final) != len(nodes) {
		t.Fatalf("after nine appliances joined at once: want all nine members, got %s", describeConfig(final))
	}
	wantSuffrages(t, "after nine appliances joined at once", final, 5, 4)
	waitConfig(t, nodes, final)

	// A voter other than the leader is gone for good; the operator removes
	// it and a non-voter takes its place.
	var gone *Node
	for _, n := range nodes {
		if s, _ := serverNamed(final, n.Name()); n != leader && s.Suffrage == raft.Voter {
			gone = n
			break
		}
	}
	nonVotersBefore := map[string]bool{}
	for _, s := range final {
		if s.Suffrage != raft.Voter {
			nonVotersBefore[string(s.ID)] = true
		}
	}
	stop(t, gone)
	if _, err := clientFor(t, leader).RemoveMember(t.Context(), gone.Name(), false); err != nil {
		t.Fatalf("remove the voter %s: %v", gone.Name(), err)
	}
	var rest []*Node
	for _, n := range nodes {
		if n != gone {
			rest = append(rest, n)
		}
	}
	// The removal returned once the promotion committed too.
	final = configOf(leader)
	if _, ok := serverNamed(final, gone.Name()); ok || len(final) != len(rest) {
		t.Fatalf("after removing %s: want the other eight members, got %s", gone.Name(), describeConfig(final))
	}
	wantSuffrages(t, "after removing the voter "+gone.Name(), final, 5, 3)
	waitConfig(t, rest, final)
	var promoted []string
	for _, s := range final {
		if s.Suffrage == raft.Voter && nonVotersBefore[string(s.ID)] {
			promoted = append(promoted, string(s.ID))
		}
	}
	if len(promoted) != 1 {
		t.Fatalf("after removing the voter %s: want one of the non-voters %v promoted, got %v in %s", gone.Name(), nonVotersBefore, promoted, describeConfig(final))
	}
}

// TestNodeRemoveLeaderPromotes removes the leader itself: it promotes the
// non-voter before its own removal, because once that commits it steps
// down and can promote no one.
func TestNodeRemoveLeaderPromotes(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 4, 3)
	leader := readyLeader(t, nodes)
	var nonVoter *Node
	for _, n := range nodes {
		if s, _ := serverNamed(configOf(leader), n.Name()); s.Suffrage != raft.Voter {
			nonVoter = n
		}
	}
	if nonVoter == nil {
		t.Fatalf("four members with MaxVoters 3: want one non-voter, got %s", describeConfig(configOf(leader)))
	}

	// The leader answers (it is the one asked): removing it takes force.
	_, err := clientFor(t, leader).RemoveMember(t.Context(), leader.Name(), false)
	wantAPIError(t, "remove the leader without --force", err, client.CodeConflict)
	if _, err := clientFor(t, leader).RemoveMember(t.Context(), leader.Name(), true); err != nil {
		t.Fatalf("remove the leader %s: %v", leader.Name(), err)
	}
	var rest []*Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	waitMembers(t, rest, names(rest)...)
	for _, n := range rest {
		if s, _ := serverNamed(configOf(n), nonVoter.Name()); s.Suffrage != raft.Voter {
			t.Fatalf("after removing the leader %s, %s's configuration: want %s promoted to voter, got %s", leader.Name(), n.Name(), nonVoter.Name(), describeConfig(configOf(n)))
		}
	}
	readyLeader(t, rest)
}
