package agent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/store"
)

// nodeClient is a client with n's own node certificate: an agent talking
// for itself.
func nodeClient(t *testing.T, n *Node, addr string) (*client.Client, pki.Credentials) {
	t.Helper()
	creds, _, _, err := LoadClientCredentials(n.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewClient(addr, creds, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, creds
}

// issued is a client with a fresh certificate of the fleet's CA (taken
// from n's data dir) for role and name.
func issued(t *testing.T, n *Node, role pki.Role, name string) (*client.Client, pki.Credentials) {
	t.Helper()
	node, caKey, _, err := n.dir.readCredentials()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(node.CACertPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(name, role, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	creds := pki.Credentials{CACertPEM: node.CACertPEM, CertPEM: cert, KeyPEM: key}
	c, err := client.NewClient(n.cfg.Advertise, creds, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, creds
}

// rawPost posts body to path on the agent at addr with creds and extra
// headers, without following redirects, and returns the status.
func rawPost(t *testing.T, creds pki.Credentials, addr, path string, body any, header map[string]string) (int, string) {
	t.Helper()
	conf, err := pki.ClientConfig(creds, "", []string{client.ProtoAPI})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: conf},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer hc.CloseIdleConnections()
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+addr+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

// TestAccessEachIdentityOnlyItsOwnJob: with real agents and real TLS, an
// identity that is forged, of the wrong kind or not the one the request
// is about gets 403, and nothing changes in the store.
func TestAccessEachIdentityOnlyItsOwnJob(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	leader := readyLeader(t, nodes)
	follower := notLeader(nodes, leader)
	other := nodes[0]
	for _, n := range nodes {
		if n != leader && n != follower {
			other = n
		}
	}
	admin := clientFor(t, follower)
	if _, err := admin.Apply(t.Context(), client.ApplyRequest{YAML: specOne}); err != nil {
		t.Fatalf("apply as admin through a follower: %v", err)
	}
	waitSpec(t, nodes, 1, specOne)
	if got, want := leader.FSM().State().AppliedBy, "admin:local-"+follower.Name(); got != want {
		t.Fatalf("applied by %q, want %q: the leader must see the caller's own certificate", got, want)
	}
	before := leader.FSM().State()
	forbidden := func(what string, err error) {
		t.Helper()
		wantAPIError(t, what, err, client.CodeForbidden)
	}

	// An agent's certificate is not an admin's, header or no header.
	nc, ncreds := nodeClient(t, follower, leader.cfg.Advertise)
	_, err := nc.Apply(t.Context(), client.ApplyRequest{YAML: specTwo})
	forbidden("a spec applied with a node certificate", err)
	if code, body := rawPost(t, ncreds, leader.cfg.Advertise, "/v1/spec", client.ApplyRequest{YAML: specTwo},
		map[string]string{"X-Fleetctl-User": "admin:alice", "X-Fleetctl-Forwarded-By": follower.Name()}); code != http.StatusForbidden {
		t.Fatalf("a spec applied with a node certificate and a forged user header: want 403, got %d %s", code, body)
	}
	forbidden("members remove with a node certificate", nc.RemoveMember(t.Context(), other.Name()))

	// An agent acts only for itself.
	_, err = nc.RenewLease(t.Context(), client.LeaseRequest{Appliance: other.Name()})
	forbidden("a lease renewed for another appliance", err)
	forbidden("another appliance's status", nc.SetNodeStatus(t.Context(), other.Name(), store.NodeStatus{Converged: true}))
	forbidden("a trail entry recorded for another sender", nc.AppendTrail(t.Context(), store.TrailEntry{ID: "x", Share: "docs", Side: "send", From: other.Name(), To: follower.Name(), Result: "ok"}))

	// Switchover steps come only from the leader.
	if code, body := rawPost(t, ncreds, other.cfg.Advertise, "/v1/switchover/prepare", map[string]any{"share": "docs", "epoch": 0}, nil); code != http.StatusForbidden || !strings.Contains(body, "not the leader") {
		t.Fatalf("switchover prepare from a follower: want 403 (not the leader), got %d %s", code, body)
	}

	// An admin credential does not act as an agent.
	_, err = admin.RenewLease(t.Context(), client.LeaseRequest{Appliance: follower.Name()})
	forbidden("a lease renewed with an admin credential", err)

	// A certificate of the fleet's CA for a node that never became a
	// member (as the join token hands out) reads nothing and writes
	// nothing.
	intruder, _ := issued(t, leader, pki.RoleNode, "intruder")
	_, err = intruder.Status(t.Context())
	forbidden("status with a non-member's node certificate", err)
	_, err = intruder.RenewLease(t.Context(), client.LeaseRequest{Appliance: "intruder"})
	forbidden("a lease renewed by a non-member", err)

	if after := leader.FSM().State(); after.Generation != before.Generation || len(after.Nodes) != len(before.Nodes) || len(after.Trails) != 0 {
		t.Fatalf("a refused request changed the store: generation %d → %d, %d → %d node statuses, trails %v",
			before.Generation, after.Generation, len(before.Nodes), len(after.Nodes), after.Trails)
	}
}
