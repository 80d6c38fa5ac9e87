package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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

// rawGet gets path from the agent at addr with creds (none when nil),
// checking the agent's certificate against the fleet's CA, and returns
// the status and body; status 0 when the connection was refused.
func rawGet(t *testing.T, creds *pki.Credentials, addr, path string) (int, string) {
	t.Helper()
	var conf *tls.Config
	if creds != nil {
		var err error
		if conf, err = pki.ClientConfig(*creds, "", []string{client.ProtoAPI}); err != nil {
			t.Fatal(err)
		}
	} else {
		conf = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{client.ProtoAPI}} // only the status matters
	}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error() // refused at the handshake
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
	refused := func(what string, err error) {
		t.Helper()
		var ae *client.APIError
		if err == nil || errors.As(err, &ae) && ae.Code != client.CodeForbidden {
			t.Fatalf("%s: want 403 or a refused connection, got %v", what, err)
		}
	}

	// An agent's certificate is not an admin's, header or no header.
	nc, ncreds := nodeClient(t, follower, leader.cfg.Advertise)
	_, err := nc.Apply(t.Context(), client.ApplyRequest{YAML: specTwo})
	forbidden("a spec applied with a node certificate", err)
	if code, body := rawPost(t, ncreds, leader.cfg.Advertise, "/v1/spec", client.ApplyRequest{YAML: specTwo},
		map[string]string{"X-Fleetctl-User": "admin:alice", "X-Fleetctl-Forwarded-By": follower.Name()}); code != http.StatusForbidden {
		t.Fatalf("a spec applied with a node certificate and a forged user header: want 403, got %d %s", code, body)
	}
	_, err = nc.RemoveMember(t.Context(), other.Name(), true)
	forbidden("members remove with a node certificate", err)

	// An agent acts only for itself.
	_, err = nc.RenewLease(t.Context(), client.LeaseRequest{Appliance: other.Name()})
	forbidden("a lease renewed for another appliance", err)
	forbidden("another appliance's status", nc.SetNodeStatus(t.Context(), other.Name(), store.NodeStatus{Converged: true}))
	forbidden("a trail entry recorded for another sender", nc.AppendTrail(t.Context(), store.TrailEntry{ID: "x", Share: "docs", Side: "send", From: other.Name(), To: follower.Name(), Result: "ok"}))

	// A drill runs a command on an appliance: admins only. And only the
	// replica records a drill.
	_, err = nc.Drill(t.Context(), client.DrillRequest{Share: "docs", Check: "id"})
	forbidden("a drill asked with a node certificate", err)
	forbidden("a drill recorded for another replica", nc.AppendTrail(t.Context(), store.TrailEntry{ID: "d", Share: "docs", Side: "drill", From: follower.Name(), To: other.Name(), Result: "ok"}))

	// A restore writes on an appliance as its agent: admins only. And only
	// the appliance holding the copy records it.
	_, err = nc.Restore(t.Context(), client.RestoreRequest{Share: "docs", From: "docs.20261125T084600Z", Path: "x", To: "/tmp/x"})
	forbidden("a restore asked with a node certificate", err)
	forbidden("a restore recorded for another appliance", nc.AppendTrail(t.Context(), store.TrailEntry{ID: "r", Share: "docs", Side: "restore", From: other.Name(), To: other.Name(), Result: "ok"}))

	// A copy's stream for a restore onto another appliance is taken only
	// with a ticket an admin asked that appliance for: an agent cannot
	// push a subvolume into another's pool on its own say.
	if code, body := rawPost(t, ncreds, other.cfg.Advertise, "/v1/restore/receive", map[string]any{}, map[string]string{
		"X-Fleetctl-Restore": base64.StdEncoding.EncodeToString([]byte(`{"ticket":"forged","share":"docs","copy":"/x","uuid":"u"}`)),
	}); code != http.StatusForbidden || !strings.Contains(body, "no ticket") {
		t.Fatalf("a restore stream without a ticket: want 403 (no ticket), got %d %s", code, body)
	}
	adminCreds, _, _, err := LocalAdmin(t.Context(), follower.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := rawPost(t, adminCreds, other.cfg.Advertise, "/v1/restore/receive", map[string]any{}, nil); code != http.StatusForbidden {
		t.Fatalf("a restore stream with an admin credential: want 403, got %d", code)
	}

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
	// (A certificate the fleet did not record is refused at the
	// handshake; TestRevocation covers that.)
	intruder, _ := issued(t, leader, pki.RoleNode, "intruder")
	_, err = intruder.Status(t.Context())
	refused("status with a non-member's node certificate", err)
	_, err = intruder.RenewLease(t.Context(), client.LeaseRequest{Appliance: "intruder"})
	refused("a lease renewed by a non-member", err)

	// Metrics: any admin or member reads them, over mutual TLS; a
	// non-member's certificate and no certificate get nothing.
	_, intruderCreds := issued(t, leader, pki.RoleNode, "intruder2")
	for _, c := range []struct {
		who   string
		creds *pki.Credentials
		want  int
	}{
		{"an admin", &adminCreds, http.StatusOK},
		{"a member agent", &ncreds, http.StatusOK},
		{"a non-member's node certificate", &intruderCreds, http.StatusForbidden},
		{"no certificate", nil, http.StatusUnauthorized},
	} {
		code, body := rawGet(t, c.creds, other.cfg.Advertise, "/metrics")
		if code == 0 && c.want == http.StatusForbidden {
			continue // refused at the handshake: as good
		}
		if code != c.want || (code == http.StatusOK) != strings.Contains(body, "fleetctl_build_info") {
			t.Fatalf("GET /metrics as %s: want %d, got %d %.200s", c.who, c.want, code, body)
		}
	}

	if after := leader.FSM().State(); after.Generation != before.Generation || len(after.Nodes) != len(before.Nodes) || len(after.Trails) != 0 {
		t.Fatalf("a refused request changed the store: generation %d → %d, %d → %d node statuses, trails %v",
			before.Generation, after.Generation, len(before.Nodes), len(after.Nodes), after.Trails)
	}
}

// wantLockedOut polls until creds get nothing from n's API (403 or a
// refused connection) and its Raft port refuses them, within 5 s.
func wantLockedOut(t *testing.T, n *Node, who string, creds pki.Credentials) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	c, err := client.NewClient(n.cfg.Advertise, creds, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := c.Status(ctx)
		cancel()
		var ae *client.APIError
		if err != nil && (!errors.As(err, &ae) || ae.Code == client.CodeForbidden) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still let in by %s's API 5 s after the revocation (%v)", who, n.Name(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id, _ := pki.IdentityOf(mustLeaf(t, creds)); id.Role == pki.RoleNode {
		conf, err := pki.ClientConfig(creds, n.Name(), []string{protoRaft})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := requestVote(n, conf); err == nil {
			t.Fatalf("%s: %s's Raft port still answers: %+v", who, n.Name(), resp)
		}
	}
}

func mustLeaf(t *testing.T, creds pki.Credentials) *x509.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// TestRevocation: a removed member and a revoked admin are locked out of
// every port within 5 s, also with certificates the removed member signs
// with the CA key it kept; the join tokens it may have seen stop working.
func TestRevocation(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	leader := readyLeader(t, nodes)
	var gone, stay *Node
	for _, n := range nodes {
		if n != leader {
			if gone == nil {
				gone = n
			} else {
				stay = n
			}
		}
	}
	admin := clientFor(t, leader)
	goneCreds, _, _, err := LoadClientCredentials(gone.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	goneAdmin, _, _, err := LocalAdmin(t.Context(), gone.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	// Before: the member reads, and its Raft port is open to it.
	if _, err := client.NewClient(stay.cfg.Advertise, goneCreds, ""); err != nil {
		t.Fatal(err)
	}
	bundle, err := IssueAdminCredential(t.Context(), leader.cfg.DataDir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := pki.ParseBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := client.NewClient(stay.cfg.Advertise, alice, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := ac.Status(t.Context()); err != nil {
		t.Fatalf("status as alice before the revocation: %v", err)
	}
	certs, err := admin.Certs(t.Context())
	if err != nil || !slices.ContainsFunc(certs, func(c client.CertInfo) bool { return c.Role == "admin" && c.Name == "alice" }) {
		t.Fatalf("credential list: want alice's certificate listed, got %+v, %v", certs, err)
	}

	// It still runs: removing it takes force.
	if _, err := admin.RemoveMember(t.Context(), gone.Name(), false); err == nil || !strings.Contains(err.Error(), "stop its agent first") {
		t.Fatalf("members remove of a running member without --force: want it refused (stop it first), got %v", err)
	}
	if _, err := admin.RemoveMember(t.Context(), gone.Name(), true); err != nil {
		t.Fatalf("members remove %s: %v", gone.Name(), err)
	}
	for _, n := range []*Node{leader, stay} {
		wantLockedOut(t, n, "the removed member's certificate", goneCreds)
		wantLockedOut(t, n, "the admin credential the CLI kept on the removed member", goneAdmin)
	}
	// It kept the CA key: what it signs now is refused too, under its own
	// name, a new one, or a member's.
	node, caKey, _, err := gone.dir.readCredentials()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(node.CACertPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range []struct {
		role pki.Role
		name string
	}{{pki.RoleNode, gone.Name()}, {pki.RoleNode, "newcomer"}, {pki.RoleNode, stay.Name()}, {pki.RoleAdmin, "mallory"}} {
		cert, key, err := ca.Issue(forged.name, forged.role, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		wantLockedOut(t, leader, fmt.Sprintf("a %s certificate for %s signed by the removed member", forged.role, forged.name), pki.Credentials{CACertPEM: node.CACertPEM, CertPEM: cert, KeyPEM: key})
	}
	// Join tokens were rotated: the old one no longer joins.
	cfg := joinConfig(t, "newcomer", leader)
	if _, err := tryStart(t, t.Context(), cfg); err == nil {
		t.Fatalf("join with a token from before the removal: want it refused")
	}

	// An admin credential revoked: refused within 5 s, on a connection
	// that was already open too.
	if res, err := admin.RevokeCert(t.Context(), client.RevokeRequest{Name: "alice"}); err != nil || res.Revoked != 1 {
		t.Fatalf("credential revoke alice: want 1 revoked, got %+v, %v", res, err)
	}
	wantLockedOut(t, stay, "alice's revoked credential", alice)
	if _, err := admin.Status(t.Context()); err != nil {
		t.Fatalf("the other admin credential stopped working: %v", err)
	}
}
