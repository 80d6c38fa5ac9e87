package agent

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/store"
)

func threeMembers(suffrage3 raft.ServerSuffrage) raft.Configuration {
	return raft.Configuration{Servers: []raft.Server{
		{ID: "n3", Address: "10.0.0.3:7400", Suffrage: suffrage3},
		{ID: "n1", Address: "10.0.0.1:7400", Suffrage: raft.Voter},
		{ID: "n2", Address: "10.0.0.2:7400", Suffrage: raft.Voter},
	}}
}

func TestPlanRecovery(t *testing.T) {
	before := threeMembers(raft.Nonvoter)
	for _, tc := range []struct {
		name      string
		survivors []string
		want      raft.Configuration
		dropped   []string
		refused   string
	}{
		{name: "one survivor", survivors: []string{"n1"},
			want:    raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: "10.0.0.1:7400", Suffrage: raft.Voter}}},
			dropped: []string{"n2", "n3"}},
		{name: "a quorum of the voters", survivors: []string{"n1", "n2"}, refused: "n1, n2 are 2 of the fleet's 2 voters, a quorum: start their agents as they were"},
		{name: "two, a non-voter made a voter, in the configuration's order", survivors: []string{"n1", " n3", "n1"},
			want: raft.Configuration{Servers: []raft.Server{
				{ID: "n3", Address: "10.0.0.3:7400", Suffrage: raft.Voter},
				{ID: "n1", Address: "10.0.0.1:7400", Suffrage: raft.Voter},
			}},
			dropped: []string{"n2"}},
		{name: "empty", survivors: []string{"", " "}, refused: "name the surviving members with --survivors (this agent is n1; the members are n1, n2, n3)"},
		{name: "not members", survivors: []string{"n1", "n9", "n8"}, refused: "n8, n9 are not members of the fleet (its members are n1, n2, n3)"},
		{name: "not this agent", survivors: []string{"n2"}, refused: "the survivors must include this agent, n1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped, err := planRecovery(before, "n1", tc.survivors)
			if tc.refused != "" {
				if !errors.Is(err, ErrBadSurvivors) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("want ErrBadSurvivors saying %q, got %v", tc.refused, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("want a configuration, got %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) || !slices.Equal(dropped, tc.dropped) {
				t.Fatalf("want %+v dropping %v, got %+v dropping %v", tc.want, tc.dropped, got, dropped)
			}
		})
	}
}

func TestPlanRecoveryNamesOneUnknown(t *testing.T) {
	_, _, err := planRecovery(threeMembers(raft.Voter), "n1", []string{"n1", "nas9"})
	if want := "nas9 is not a member of the fleet"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("want %q, got %v", want, err)
	}
}

func TestQuorumReachable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		config    raft.Configuration
		self      string
		answered  []raft.ServerID
		reachable bool
		voters    int
		up        int
	}{
		{name: "alone of three", config: threeMembers(raft.Voter), self: "n1", reachable: false, voters: 3, up: 1},
		{name: "itself and one more of three", config: threeMembers(raft.Voter), self: "n1", answered: []raft.ServerID{"n3"}, reachable: true, voters: 3, up: 2},
		{name: "a non-voter answering counts for nothing", config: threeMembers(raft.Nonvoter), self: "n1", answered: []raft.ServerID{"n3"}, reachable: false, voters: 2, up: 1},
		{name: "a non-voter itself counts for nothing", config: threeMembers(raft.Nonvoter), self: "n3", answered: []raft.ServerID{"n1"}, reachable: false, voters: 2, up: 1},
		{name: "two others of two voters, from a non-voter", config: threeMembers(raft.Nonvoter), self: "n3", answered: []raft.ServerID{"n1", "n2"}, reachable: true, voters: 2, up: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answered := map[raft.ServerID]bool{}
			for _, id := range tc.answered {
				answered[id] = true
			}
			reachable, voters, up := quorumReachable(tc.config, tc.self, answered)
			if reachable != tc.reachable || voters != tc.voters || up != tc.up {
				t.Fatalf("want reachable=%v %d of %d, got reachable=%v %d of %d", tc.reachable, tc.up, tc.voters, reachable, up, voters)
			}
		})
	}
}

func TestDecideRecoveryCleanup(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	before, after := at.Add(-time.Hour), at.Add(time.Minute)
	st := &store.State{
		Certs: map[string]store.CertRecord{
			"a": {Role: "node", Name: "n2", IssuedAt: before},
			"b": {Role: "admin", Name: "local-n2", IssuedAt: before},
			"c": {Role: "node", Name: "n2", IssuedAt: after}, // a replacement n2 joined since
			"d": {Role: "node", Name: "n1", IssuedAt: before},
			"e": {Role: "admin", Name: "n2", IssuedAt: before}, // an admin who happens to be called n2
			"f": {Role: "node", Name: "n3", IssuedAt: before},  // n3 is a member again
			"g": {Role: "admin", Name: "alice", IssuedAt: before},
		},
		Tokens: map[string]store.JoinToken{
			"old": {ID: "old", CreatedAt: before},
			"new": {ID: "new", CreatedAt: after},
		},
	}
	rec := recoveryRecord{At: at, Survivors: []string{"n1"}, Dropped: []string{"n2", "n3"}}
	got := decideRecoveryCleanup(st, rec, map[string]bool{"n1": true, "n3": true}, "node:n1", at)
	var forgot []string
	for _, fc := range got.Certs {
		forgot = append(forgot, fmt.Sprintf("%s:%s:%s", fc.Role, fc.Name, fc.Fingerprint))
		if fc.By != "node:n1" || !fc.At.Equal(at) || !strings.Contains(fc.Reason, "quorum loss") {
			t.Errorf("forget %s: want by node:n1 at %s with a reason, got %+v", fc.Fingerprint, at, fc)
		}
	}
	if want := []string{"admin:local-n2:b", "node:n2:a"}; !slices.Equal(forgot, want) {
		t.Errorf("certificates forgotten: want %v, got %v", want, forgot)
	}
	if want := []string{"old"}; !slices.Equal(got.Tokens, want) {
		t.Errorf("tokens revoked: want %v, got %v", want, got.Tokens)
	}
	if got.empty() {
		t.Error("want something to do, got empty")
	}
	if c := decideRecoveryCleanup(&store.State{}, rec, nil, "node:n1", at); !c.empty() {
		t.Errorf("nothing recorded: want nothing to do, got %+v", c)
	}
}

// TestRecoverAfterQuorumLoss: a fleet of three, n1 stopped: recovery is
// refused while n2 and n3 answer. With them gone too, n1 is recovered
// alone; started, it leads with the spec it had, and forgets n2's and n3's
// certificates and the old join tokens.
func TestRecoverAfterQuorumLoss(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	n1 := nodes[0]
	leader := readyLeader(t, nodes)
	if _, err := clientFor(t, leader).Apply(t.Context(), client.ApplyRequest{YAML: specOne}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitSpec(t, nodes, 1, specOne)
	waitUntil(t, "every member's certificate recorded", func() (bool, string) {
		st := n1.FSM().State()
		return st.HasCerts(string(pki.RoleNode), "n1") && st.HasCerts(string(pki.RoleNode), "n2") && st.HasCerts(string(pki.RoleNode), "n3"),
			fmt.Sprintf("%d certificates", len(st.Certs))
	})
	stop(t, n1)

	rc := RecoverConfig{DataDir: n1.cfg.DataDir, Survivors: []string{"n1"}, ProbeTimeout: 5 * time.Second}
	rec, err := Recover(t.Context(), rc)
	if !errors.Is(err, ErrQuorumReachable) {
		t.Fatalf("recover with n2 and n3 up: want ErrQuorumReachable, got %v", err)
	}
	if rec.Up != 3 || rec.Voters != 3 || !slices.Equal(rec.Answered, []string{"n2", "n3"}) {
		t.Fatalf("recover with n2 and n3 up: want 3 of 3 up (n2, n3 answered), got %d of %d (%v)", rec.Up, rec.Voters, rec.Answered)
	}
	if _, ok, _ := dataDir(n1.cfg.DataDir).readRecovery(); ok {
		t.Fatal("a refused recovery left a recovery record")
	}

	stop(t, nodes[1])
	stop(t, nodes[2])
	rec, err = Recover(t.Context(), rc)
	if err != nil {
		t.Fatalf("recover with n2 and n3 gone: %v", err)
	}
	if len(rec.After.Servers) != 1 || rec.After.Servers[0].ID != "n1" || !slices.Equal(rec.Dropped, []string{"n2", "n3"}) || rec.Generation != 1 {
		t.Fatalf("want n1 alone, n2 and n3 dropped, generation 1; got %+v", rec)
	}

	back := startNode(t, Config{DataDir: n1.cfg.DataDir, Listen: n1.cfg.Listen})
	readyLeader(t, []*Node{back})
	waitSpec(t, []*Node{back}, 1, specOne)
	waitUntil(t, "n2's and n3's certificates and the old tokens forgotten", func() (bool, string) {
		st := back.FSM().State()
		return !st.HasCerts(string(pki.RoleNode), "n2") && !st.HasCerts(string(pki.RoleNode), "n3") && len(st.Tokens) == 0,
			fmt.Sprintf("%d certificates, %d tokens", len(st.Certs), len(st.Tokens))
	})
	waitUntil(t, "the recovery in the witness log", func() (bool, string) {
		for _, e := range back.FSM().State().WitnessLog {
			if e.Event == store.EventQuorumRecovered {
				return strings.Contains(e.Detail, "kept n1 and dropped n2, n3"), e.Detail
			}
		}
		return false, "no event"
	})
	if !back.FSM().State().HasCerts(string(pki.RoleNode), "n1") {
		t.Fatal("n1's own certificate was forgotten")
	}
	if _, ok, _ := dataDir(n1.cfg.DataDir).readRecovery(); ok {
		t.Fatal("the recovery record is still there after the leader finished")
	}
}

func TestRecoverNothingThere(t *testing.T) {
	t.Parallel()
	_, err := Recover(t.Context(), RecoverConfig{DataDir: t.TempDir(), Survivors: []string{"n1"}})
	if !errors.Is(err, ErrNothingToRecover) {
		t.Fatalf("empty data dir: want ErrNothingToRecover, got %v", err)
	}
}
