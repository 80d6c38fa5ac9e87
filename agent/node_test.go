package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
)

// The tests in this file start real agents in-process: each node listens on
// its own 127.0.0.1 port with mutual TLS, keeps its state in a temporary data
// dir, and is shut down when its test ends.

// waitTimeout bounds every wait for the fleet to reach a state: elections,
// joins, replication.
const waitTimeout = 20 * time.Second

// logWriter passes a node's log lines to t.Log while the test runs, so a
// failing test shows what its nodes said. Lines logged after the test ends
// (a goroutine still stopping) are dropped.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, nil))
}

// handedOut are the addresses freeAddr has returned in this test
// process: never returned twice, so parallel tests never share one.
var (
	handedOutMu sync.Mutex
	handedOut   = map[string]bool{}
)

// freeAddr returns a 127.0.0.1 address with a port nothing listens on and
// that no other test of this run was given.
func freeAddr(t testing.TB) string {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr
		}
	}
	t.Fatal("no free port not handed out already in 100 tries")
	return ""
}

// tryStart starts a node and shuts it down when the test ends.
func tryStart(t testing.TB, ctx context.Context, cfg Config) (*Node, error) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	n, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := n.Shutdown(); err != nil {
			t.Errorf("shut down %s: %v", n.Name(), err)
		}
	})
	return n, nil
}

func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := tryStart(t, t.Context(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	return n
}

func bootstrapConfig(t testing.TB, name string) Config {
	return Config{Name: name, DataDir: t.TempDir(), Listen: freeAddr(t), Bootstrap: true}
}

// joinConfig is the configuration of a new node joining through via with
// the join token from via's data dir.
func joinConfig(t testing.TB, name string, via *Node) Config {
	return Config{Name: name, DataDir: t.TempDir(), Listen: freeAddr(t), Join: via.cfg.Advertise, Token: readToken(t, via)}
}

func readToken(t testing.TB, n *Node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, fileToken))
	if err != nil {
		t.Fatalf("read the join token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// newFleet starts size nodes named n1, n2, ...: n1 bootstraps the fleet and
// the others join it through n1, one after the other. It returns once every
// node has all of them in its configuration and a leader is ready.
func newFleet(t testing.TB, size, maxVoters int) []*Node {
	t.Helper()
	cfg := bootstrapConfig(t, "n1")
	cfg.MaxVoters = maxVoters
	nodes := []*Node{startNode(t, cfg)}
	for i := 2; i <= size; i++ {
		cfg := joinConfig(t, fmt.Sprintf("n%d", i), nodes[0])
		cfg.MaxVoters = maxVoters
		nodes = append(nodes, startNode(t, cfg))
	}
	waitMembers(t, nodes, names(nodes)...)
	readyLeader(t, nodes)
	return nodes
}

func names(nodes []*Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name())
	}
	return out
}

// waitUntil polls cond until it holds, or fails the test after waitTimeout
// with what it waited for and cond's description of the last state seen.
func waitUntil(t testing.TB, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", waitTimeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func configOf(n *Node) []raft.Server {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

func describeConfig(servers []raft.Server) string {
	var parts []string
	for _, s := range servers {
		parts = append(parts, fmt.Sprintf("%s@%s (%s)", s.ID, s.Address, s.Suffrage))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func serverNamed(servers []raft.Server, name string) (raft.Server, bool) {
	for _, s := range servers {
		if string(s.ID) == name {
			return s, true
		}
	}
	return raft.Server{}, false
}

// waitMembers waits until every one of nodes has exactly the members want in
// its Raft configuration.
func waitMembers(t testing.TB, nodes []*Node, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	for _, n := range nodes {
		waitUntil(t, fmt.Sprintf("%s to have members %v", n.Name(), want), func() (bool, string) {
			servers := configOf(n)
			var got []string
			for _, s := range servers {
				got = append(got, string(s.ID))
			}
			sort.Strings(got)
			return slices.Equal(got, want), describeConfig(servers)
		})
	}
}

// readyLeader waits until one of nodes leads and has applied every earlier
// entry, and returns it.
func readyLeader(t testing.TB, nodes []*Node) *Node {
	t.Helper()
	var leader *Node
	waitUntil(t, "a ready leader", func() (bool, string) {
		var states []string
		for _, n := range nodes {
			if n.raft.State() == raft.Leader && n.leaderReady.Load() {
				leader = n
				return true, ""
			}
			states = append(states, n.Name()+"="+n.raft.State().String())
		}
		return false, strings.Join(states, ", ")
	})
	return leader
}

// notLeader returns the first of nodes that is not leader.
func notLeader(nodes []*Node, leader *Node) *Node {
	for _, n := range nodes {
		if n != leader {
			return n
		}
	}
	return nil
}

// waitSpec waits until every one of nodes has applied generation gen with
// the given YAML.
func waitSpec(t testing.TB, nodes []*Node, gen uint64, yaml string) {
	t.Helper()
	for _, n := range nodes {
		waitUntil(t, fmt.Sprintf("%s to apply generation %d", n.Name(), gen), func() (bool, string) {
			s := n.FSM().State()
			return s.Generation == gen && string(s.YAML) == yaml, fmt.Sprintf("generation %d, YAML %q", s.Generation, s.YAML)
		})
	}
}

// clientFor returns an admin client talking to n, as the CLI on n's
// appliance makes it (LocalAdminCredentials).
func clientFor(t testing.TB, n *Node) *client.Client {
	t.Helper()
	creds, name, addr, err := LocalAdmin(t.Context(), n.cfg.DataDir)
	if err != nil {
		t.Fatalf("load %s's client credentials: %v", n.Name(), err)
	}
	if name != n.Name() || addr != n.cfg.Advertise {
		t.Fatalf("client credentials of %s: want name %q and address %s, got %q and %s", n.Name(), n.Name(), n.cfg.Advertise, name, addr)
	}
	c, err := client.NewClient(addr, creds, name)
	if err != nil {
		t.Fatalf("client for %s: %v", n.Name(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// wantAPIError fails the test unless err is an *APIError with code.
func wantAPIError(t testing.TB, what string, err error, code string) *client.APIError {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("%s: want an client.APIError with code %q, got %T: %v", what, code, err, err)
	}
	return ae
}

func stop(t testing.TB, n *Node) {
	t.Helper()
	if err := n.Shutdown(); err != nil {
		t.Fatalf("shut down %s: %v", n.Name(), err)
	}
}

// dialStream is a raft.StreamLayer that only dials, with a given TLS
// configuration: a stand-in for another member's transport.
type dialStream struct {
	conf   *tls.Config
	closed chan struct{}
	once   sync.Once
}

func (s *dialStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), s.conf)
}

func (s *dialStream) Accept() (net.Conn, error) {
	<-s.closed
	return nil, net.ErrClosed
}

func (s *dialStream) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *dialStream) Addr() net.Addr { return advertiseAddr("127.0.0.1:1") }

// requestVote sends n a Raft RequestVote RPC (from a candidate outside the
// configuration, in term 0, so n refuses the vote) over a connection made
// with conf, and returns what n answered.
func requestVote(n *Node, conf *tls.Config) (*raft.RequestVoteResponse, error) {
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &dialStream{conf: conf, closed: make(chan struct{})},
		MaxPool: 1,
		Timeout: 5 * time.Second,
		Logger:  hclog.NewNullLogger(),
	})
	defer trans.Close()
	req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("probe"), Addr: []byte("127.0.0.1:1")}}
	var resp raft.RequestVoteResponse
	err := trans.RequestVote(raft.ServerID(n.Name()), raft.ServerAddress(n.cfg.Advertise), req, &resp)
	return &resp, err
}

// wantRaftRefused checks that n closes a Raft connection made with conf
// right after the handshake, and answers no Raft RPC on it.
func wantRaftRefused(t *testing.T, n *Node, who string, conf *tls.Config) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.cfg.Advertise, conf)
	if err != nil {
		t.Fatalf("%s: TLS handshake on the Raft protocol: %v", who, err)
	}
	defer c.Close()
	if got := c.ConnectionState().NegotiatedProtocol; got != protoRaft {
		t.Fatalf("%s: want ALPN %q negotiated, got %q", who, protoRaft, got)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	k, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("%s: want the server to close the Raft connection at once, got %d bytes and %v", who, k, err)
	}
	if resp, err := requestVote(n, conf); err == nil {
		t.Fatalf("%s: want no answer to a Raft RPC, got %+v", who, resp)
	}
}

func TestNodeThreeMembersApplyThroughFollower(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, bootstrapConfig(t, "n1"))
	fi, err := os.Stat(filepath.Join(n1.cfg.DataDir, fileToken))
	if err != nil {
		t.Fatalf("the bootstrap node's join token: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("join-token mode: want 0600, got %#o", fi.Mode().Perm())
	}
	n2 := startNode(t, joinConfig(t, "n2", n1))
	n3 := startNode(t, joinConfig(t, "n3", n1))
	nodes := []*Node{n1, n2, n3}
	waitMembers(t, nodes, "n1", "n2", "n3")
	follower := notLeader(nodes, readyLeader(t, nodes))
	c := clientFor(t, follower)
	ctx := t.Context()

	res, err := c.Apply(ctx, client.ApplyRequest{YAML: specOne})
	if err != nil {
		t.Fatalf("apply through follower %s: %v", follower.Name(), err)
	}
	if res.Generation != 1 || res.Unchanged {
		t.Fatalf("first apply: want generation 1, changed; got %+v", res)
	}
	waitSpec(t, nodes, 1, specOne)
	if got, want := n1.FSM().State().AppliedBy, "admin:local-"+follower.Name(); got != want {
		t.Fatalf("applied by: want %q (the follower redirected its caller to the leader), got %q", want, got)
	}

	_, err = c.Apply(ctx, client.ApplyRequest{YAML: specOne + "colour: blue\n"})
	ae := wantAPIError(t, "apply an invalid spec", err, client.CodeInvalidSpec)
	if len(ae.Problems) == 0 {
		t.Fatalf("apply an invalid spec: want the problems listed, got none in %+v", ae)
	}
	spec, err := c.Spec(ctx, true)
	if err != nil {
		t.Fatalf("consistent read of the spec: %v", err)
	}
	if spec.Generation != 1 || spec.YAML != specOne {
		t.Fatalf("after the refused apply: want generation 1 with the first spec, got %d with %q", spec.Generation, spec.YAML)
	}

	_, err = c.Apply(ctx, client.ApplyRequest{YAML: specTwo, ExpectedGeneration: 5})
	wantAPIError(t, "apply expecting generation 5", err, client.CodeConflict)
	for _, n := range nodes {
		if s := n.FSM().State(); s.Generation != 1 {
			t.Fatalf("%s after refused applies: want generation 1, got %d", n.Name(), s.Generation)
		}
	}
}

func TestNodeRefusesWithoutClientCert(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, bootstrapConfig(t, "n1"))
	addr := n1.cfg.Advertise

	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	t.Cleanup(noCert.CloseIdleConnections)
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/status", ""},
		{http.MethodGet, "/v1/spec", ""},
		{http.MethodPost, "/v1/spec", `{"yaml":"version: 1\n"}`},
	} {
		req, err := http.NewRequest(r.method, "https://"+addr+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noCert.Do(req)
		if err != nil {
			t.Fatalf("%s %s without a client certificate: %v", r.method, r.path, err)
		}
		var ae client.APIError
		err = json.NewDecoder(resp.Body).Decode(&ae)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || err != nil || ae.Code != client.CodeUnauthorized {
			t.Fatalf("%s %s without a client certificate: want 401 with code %q, got %d with %+v (%v)", r.method, r.path, client.CodeUnauthorized, resp.StatusCode, ae, err)
		}
	}

	// A node's own certificate is answered on the Raft protocol, so the
	// refusals below are refusals, not a broken endpoint.
	nodeConf, err := pki.ClientConfig(n1.creds, "n1", []string{protoRaft})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := requestVote(n1, nodeConf); err != nil {
		t.Fatalf("Raft RPC with a node certificate: want an answer, got %v", err)
	}
	wantRaftRefused(t, n1, "Raft without a client certificate", &tls.Config{InsecureSkipVerify: true, NextProtos: []string{protoRaft}})

	// A certificate of another CA, for a fleet of the same name.
	other, err := pki.NewCA("fleet")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := other.Issue("n1", pki.RoleNode, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{client.ProtoAPI, protoRaft} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			InsecureSkipVerify: true,
			Certificates:       []tls.Certificate{cert},
			NextProtos:         []string{proto},
		})
		if err == nil {
			// In TLS 1.3 the client finishes its side of the handshake
			// first; the server's refusal arrives as an alert.
			c.SetDeadline(time.Now().Add(20 * time.Second)) // a loaded machine under -race is slow
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "remote error: tls:") {
			t.Fatalf("%s with a certificate of another CA: want the server to fail the handshake, got %v", proto, err)
		}
	}

	plain := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(plain.CloseIdleConnections)
	resp, err := plain.Get("http://" + addr + "/v1/status")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("plain HTTP: want no HTTP response, got %s", resp.Status)
	}
}

func TestNodeJoinWrongToken(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, bootstrapConfig(t, "n1"))
	caPEM, err := os.ReadFile(filepath.Join(n1.cfg.DataDir, fileCACert))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("no PEM block in ca.crt")
	}
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	wrong := pki.Token{CAPin: pki.SPKIPin(caCert)}
	rand.Read(wrong.Secret[:])

	cfg := joinConfig(t, "n2", n1)
	cfg.Token = wrong.String()
	if _, err := tryStart(t, t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("join with a wrong secret: want an error about the join token, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, fileIdentity)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a refused join: want no %s in the data dir, got %v", fileIdentity, err)
	}
	if servers := configOf(n1); len(servers) != 1 {
		t.Fatalf("after a refused join: want n1 alone in the fleet, got %s", describeConfig(servers))
	}

	// The refused join left nothing in the way: with the right token the
	// same data dir joins.
	cfg.Token = readToken(t, n1)
	n2 := startNode(t, cfg)
	waitMembers(t, []*Node{n1, n2}, "n1", "n2")

	// A token pinning another fleet's CA: the joiner refuses the server
	// before sending the secret.
	other, err := pki.NewCA("fleet")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewToken(other.Cert)
	if err != nil {
		t.Fatal(err)
	}
	cfg = joinConfig(t, "n3", n1)
	cfg.Token = foreign.String()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := tryStart(t, ctx, cfg); err == nil || !strings.Contains(err.Error(), pki.ErrPinMismatch.Error()) {
		t.Fatalf("join with a token of another CA: want %q, got %v", pki.ErrPinMismatch, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, fileIdentity)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a join to the wrong fleet: want no %s in the data dir, got %v", fileIdentity, err)
	}
	if servers := configOf(n1); len(servers) != 2 {
		t.Fatalf("after a join to the wrong fleet: want n1 and n2 in the fleet, got %s", describeConfig(servers))
	}
}

func TestNodeRestartKeepsIdentityAndState(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	ctx := t.Context()
	leader := readyLeader(t, nodes)
	if _, err := clientFor(t, leader).Apply(ctx, client.ApplyRequest{YAML: specOne}); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	waitSpec(t, nodes, 1, specOne)

	down := notLeader(nodes, leader)
	stop(t, down)
	var up []*Node
	for _, n := range nodes {
		if n != down {
			up = append(up, n)
		}
	}
	if _, err := clientFor(t, notLeader(up, leader)).Apply(ctx, client.ApplyRequest{YAML: specTwo}); err != nil {
		t.Fatalf("second apply while %s is down: %v", down.Name(), err)
	}
	waitSpec(t, up, 2, specTwo)

	back := startNode(t, Config{DataDir: down.cfg.DataDir, Listen: down.cfg.Listen})
	if back.Name() != down.Name() {
		t.Fatalf("restarted from %s's data dir: want name %q, got %q", down.Name(), down.Name(), back.Name())
	}
	waitSpec(t, []*Node{back}, 2, specTwo)
	waitMembers(t, append(up, back), "n1", "n2", "n3")
}

func TestNodeRemoveAndRejoinAfterDataLoss(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	c := clientFor(t, n1)
	ctx := t.Context()
	if _, err := c.Apply(ctx, client.ApplyRequest{YAML: specOne}); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	waitSpec(t, nodes, 1, specOne)

	// n3 loses its disk; an operator removes it, then it joins again as new.
	stop(t, n3)
	if err := os.RemoveAll(n3.cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveMember(ctx, "n3", false); err != nil {
		t.Fatalf("remove n3: %v", err)
	}
	waitMembers(t, []*Node{n1, n2}, "n1", "n2")
	if _, err := c.Apply(ctx, client.ApplyRequest{YAML: specTwo}); err != nil {
		t.Fatalf("apply while n3 is out: %v", err)
	}
	// Removing a member revoked every join token: the old one is refused.
	cfg := joinConfig(t, "n3", n1)
	cfg.Listen = n3.cfg.Listen
	if _, err := tryStart(t, ctx, cfg); err == nil || !strings.Contains(err.Error(), "token create") {
		t.Fatalf("join with the token from before the removal: want it refused (make a new one), got %v", err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Token = newToken(t, c)
	n3 = startNode(t, cfg)
	waitMembers(t, []*Node{n1, n2, n3}, "n1", "n2", "n3")
	waitSpec(t, []*Node{n1, n2, n3}, 2, specTwo)

	// n3 loses its disk again and comes back on another port, and nobody
	// removed it first: a join cannot take a member's name.
	stop(t, n3)
	if err := os.RemoveAll(n3.cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	cfg = joinConfig(t, "n3", n1)
	cfg.Token = newToken(t, c)
	if _, err := tryStart(t, ctx, cfg); err == nil || !strings.Contains(err.Error(), "members remove n3") {
		t.Fatalf("join with the name of a member: want it refused (remove it first), got %v", err)
	}
	if _, err := c.RemoveMember(ctx, "n3", false); err != nil {
		t.Fatalf("remove n3: %v", err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Token = newToken(t, c)
	n3 = startNode(t, cfg)
	waitMembers(t, []*Node{n1, n2, n3}, "n1", "n2", "n3")
	for _, n := range []*Node{n1, n2, n3} {
		if s, _ := serverNamed(configOf(n), "n3"); string(s.Address) != n3.cfg.Advertise || s.Suffrage != raft.Voter {
			t.Fatalf("%s's configuration: want n3 a voter at its new address %s, got %s", n.Name(), n3.cfg.Advertise, describeConfig(configOf(n)))
		}
	}
	waitSpec(t, []*Node{n3}, 2, specTwo)
}

func TestNodeNonVotersBeyondMaxVoters(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 4, 3)
	want := map[string]bool{"n1": true, "n2": true, "n3": true, "n4": false}
	for _, n := range nodes {
		// The third member's join promotes the second: a step after the
		// adds, which followers may apply a moment later.
		waitUntil(t, n.Name()+"'s configuration: n1-n3 voters, n4 not", func() (bool, string) {
			for _, s := range configOf(n) {
				if got := s.Suffrage == raft.Voter; got != want[string(s.ID)] {
					return false, describeConfig(configOf(n))
				}
			}
			return true, ""
		})
	}
	st, err := clientFor(t, nodes[2]).Status(t.Context()) // not the first member: its own entry is written beside the pings
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(st.Members) != 4 {
		t.Fatalf("status: want 4 members, got %+v", st.Members)
	}
	for _, m := range st.Members {
		if m.Voter != want[m.Name] {
			t.Fatalf("status: want voter=%v for %s, got %+v", want[m.Name], m.Name, m)
		}
	}
}

func TestNodeNoLeaderError(t *testing.T) {
	t.Parallel()
	nodes := newFleet(t, 3, 0)
	c := clientFor(t, nodes[0])
	stop(t, nodes[1])
	stop(t, nodes[2])

	start := time.Now()
	_, err := c.Apply(t.Context(), client.ApplyRequest{YAML: specOne})
	took := time.Since(start)
	ae := wantAPIError(t, "apply with 2 of 3 voters down", err, client.CodeNoLeader)
	if !strings.Contains(ae.Message, "1 of 3 voters reachable") {
		t.Fatalf("apply with 2 of 3 voters down: want a message saying 1 of 3 voters reachable, got %q", ae.Message)
	}
	if took > waitTimeout {
		t.Fatalf("apply with 2 of 3 voters down: want the error within %v, took %v", waitTimeout, took)
	}
}

func TestAdminCredential(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, bootstrapConfig(t, "n1"))
	bundle, err := IssueAdminCredential(t.Context(), n1.cfg.DataDir, "alice")
	if err != nil {
		t.Fatalf("issue an admin credential: %v", err)
	}
	creds, err := pki.ParseBundle(bundle)
	if err != nil {
		t.Fatalf("parse the admin credential: %v", err)
	}
	c, err := client.NewClient(n1.cfg.Advertise, creds, "")
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	t.Cleanup(c.Close)
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("status with the admin credential: %v", err)
	}
	if st.Node != "n1" || len(st.Members) != 1 || st.Members[0].Name != "n1" {
		t.Fatalf("status with the admin credential: want n1 alone, got %+v", st)
	}

	conf, err := pki.ClientConfig(creds, "n1", []string{protoRaft})
	if err != nil {
		t.Fatal(err)
	}
	wantRaftRefused(t, n1, "Raft with an admin certificate", conf)
}

// TestHclogLevels: Raft's errors reach slog as errors, its warnings as
// warnings, with their fields as attributes and no timestamp in the
// message; its info chatter is dropped.
func TestHclogLevels(t *testing.T) {
	var buf bytes.Buffer
	l := hclogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Error("failed to appendEntries to", "peer", "n2", "error", "dial tcp: refused")
	l.Warn("heartbeat timeout reached, starting election")
	l.Info("entering follower state")
	got := buf.String()
	for _, want := range []string{
		`level=ERROR msg="raft: failed to appendEntries to" error="dial tcp: refused" peer=n2`,
		`level=WARN msg="raft: heartbeat timeout reached, starting election"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("want a line with %s, got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "follower") || strings.Count(got, "time=") != 2 {
		t.Errorf("want two lines, each with one timestamp, and no info chatter; got:\n%s", got)
	}
}

// TestBootstrapNamesTheCAAfterTheFleet: the CA a bootstrap makes belongs to
// the fleet Config.Fleet names (fleet.yaml's fleet:), and so does every
// certificate it signs, the joiners' too.
func TestBootstrapNamesTheCAAfterTheFleet(t *testing.T) {
	t.Parallel()
	cfg := bootstrapConfig(t, "n1")
	cfg.Fleet = "office"
	n1 := startNode(t, cfg)
	n2 := startNode(t, joinConfig(t, "n2", n1))
	waitMembers(t, []*Node{n1, n2}, "n1", "n2")
	for _, n := range []*Node{n1, n2} {
		creds, _, _, err := LoadClientCredentials(n.cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		id, err := pki.IdentityOf(c.Leaf)
		if err != nil {
			t.Fatalf("%s's certificate: %v", n.Name(), err)
		}
		if id.Fleet != "office" {
			t.Fatalf("%s's certificate belongs to fleet %q, want office", n.Name(), id.Fleet)
		}
	}
}

// newToken makes a join token through the admin client c.
func newToken(t testing.TB, c *client.Client) string {
	t.Helper()
	res, err := c.CreateToken(t.Context(), client.TokenRequest{Description: "test"})
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	return res.Token
}
