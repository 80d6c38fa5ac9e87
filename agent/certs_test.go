package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/store"
)

func TestCertWarnings(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	st := &store.State{Certs: map[string]store.CertRecord{
		"a": {Role: "node", Name: "nas1", NotAfter: now.Add(10 * 24 * time.Hour)},
		"b": {Role: "node", Name: "nas2", NotAfter: now.Add(5 * 24 * time.Hour)}, // renewed: b2 is newer
		"c": {Role: "node", Name: "nas2", NotAfter: now.Add(300 * 24 * time.Hour)},
		"d": {Role: "admin", Name: "alice", NotAfter: now.Add(-time.Hour)},
		"e": {Role: "admin", Name: "local-nas1", NotAfter: now.Add(20 * 24 * time.Hour)}, // the CLI renews it
	}}
	got := strings.Join(certWarnings(st, nil, now), "\n")
	for _, want := range []string{"admin:alice expires 2026-11-29 (in the past: it has expired)", "node:nas1 expires 2026-12-09 (in 10 days)"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings: want %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "nas2") || strings.Contains(got, "local-nas1") {
		t.Errorf("warnings: nas2 renewed its certificate, want no warning, got\n%s", got)
	}
}

// TestCertRenewal: an agent whose certificate is due renews it through
// the leader; the new one is recorded, presented on new connections at
// once, and kept in the data dir for the next start.
func TestCertRenewal(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	leader := readyLeader(t, nodes)
	x := notLeader(nodes, leader)
	before := pki.Fingerprint(x.credentials().Live.Leaf())
	stop(t, x)
	cfg := Config{DataDir: x.cfg.DataDir, Listen: x.cfg.Listen, CertRenewBefore: pki.CertValidity + time.Hour}
	x = startNode(t, cfg)
	waitUntil(t, x.Name()+" renews its certificate", func() (bool, string) {
		fp := pki.Fingerprint(x.credentials().Live.Leaf())
		return fp != before && leader.FSM().State().Accepts("node", x.Name(), fp), fp
	})
	renewed := pki.Fingerprint(x.credentials().Live.Leaf())
	// The fleet works with it: a spec applied through x reaches everyone,
	// and x's Raft connections use the new certificate.
	c := clientFor(t, x)
	if _, err := c.Apply(t.Context(), client.ApplyRequest{YAML: specOne}); err != nil {
		t.Fatalf("apply through %s after its renewal: %v", x.Name(), err)
	}
	waitSpec(t, []*Node{leader, x}, 1, specOne)
	// The next start presents the renewed certificate from the data dir.
	stop(t, x)
	x = startNode(t, Config{DataDir: x.cfg.DataDir, Listen: x.cfg.Listen})
	if got := pki.Fingerprint(x.credentials().Live.Leaf()); got != renewed {
		t.Fatalf("after a restart %s presents %s, want the renewed %s", x.Name(), got, renewed)
	}
	waitMembers(t, []*Node{leader, x}, names(nodes)...)
}

// A join with the bootstrap token made in the moment between the new
// fleet's election and the record of that token waits for the record
// instead of being refused (seen as a flake of
// TestNodeThreeMembersApplyThroughFollower: "the join token is not one
// this fleet accepts" 2 ms after "leader ready").
func TestJoinWaitsForTheBootstrapTokenRecord(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, bootstrapConfig(t, "n1"))
	readyLeader(t, []*Node{n1})
	// The real bootstrap token is recorded first (its goroutine reads
	// n1.token).
	deadline := time.After(30 * time.Second)
	for st, changed := n1.fsm.Watch(); !tokenValid(st, n1.token, time.Now()) || n1.tokenPending.Load(); st, changed = n1.fsm.Watch() {
		select {
		case <-changed:
		case <-time.After(time.Second): // tokenPending is not watched
		case <-deadline:
			t.Fatal("the bootstrap token was never recorded")
		}
	}
	// A second token this run "made at bootstrap" and has not recorded yet.
	tok, err := pki.NewToken(n1.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	n1.token = tok
	n1.tokenPending.Store(true)
	got := make(chan bool, 1)
	go func() {
		st := n1.joinTokenState(t.Context(), tok)
		got <- tokenValid(st, tok, time.Now())
	}()
	rec := tokenRecord(tok, time.Hour, "node:n1", "test", time.Now())
	if _, err := n1.apply(store.CmdJoinTokens, store.JoinTokenChange{Create: &rec, At: rec.CreatedAt}); err != nil {
		t.Fatalf("record the token: %v", err)
	}
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("the join was checked before the bootstrap token was recorded: it would be refused")
		}
	case <-time.After(bootstrapTokenWait + 5*time.Second):
		t.Fatal("the join did not see the recorded bootstrap token")
	}
	// Another token is not waited for.
	other, err := pki.NewToken(n1.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if tokenValid(n1.joinTokenState(t.Context(), other), other, time.Now()) {
		t.Fatal("an unrecorded token was accepted")
	}
}
