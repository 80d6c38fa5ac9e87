package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fleetctl/fleetctl/raftstore/pki"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// Error codes of APIError.
const (
	CodeNoLeader     = "no_leader"
	CodeInvalidSpec  = "invalid_spec"
	CodeConflict     = "generation_mismatch"
	CodeNotFound     = "not_found"
	CodeUnauthorized = "unauthorized"
	CodeBadRequest   = "bad_request"
	CodeInternal     = "internal"
)

// APIError is an error the API returns, with a reason fit to print.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Problems lists what is wrong with a refused spec.
	Problems schema.Errors `json:"problems,omitempty"`
	// Status is the HTTP status it came with (client side only).
	Status int `json:"-"`
}

func (e *APIError) Error() string { return e.Message }

// JoinRequest asks for a node certificate with the join token.
type JoinRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	CSR     string `json:"csr"`
	Token   string `json:"token"`
}

// JoinResponse carries what a new member needs: the CA (certificate and key:
// any voter may become leader and sign the next join), its certificate and
// the fleet's join token.
type JoinResponse struct {
	CACert string `json:"ca_cert"`
	CAKey  string `json:"ca_key"`
	Cert   string `json:"cert"`
	Token  string `json:"token"`
}

// MemberRequest asks the leader to add the calling node to the Raft group.
type MemberRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// MemberResponse says what became of a member.
type MemberResponse struct {
	Name  string `json:"name"`
	Voter bool   `json:"voter"`
}

// ApplyRequest stores a new spec.
type ApplyRequest struct {
	YAML string `json:"yaml"`
	// ExpectedGeneration, when not zero, makes the apply fail unless the
	// stored generation is this one (compare-and-set).
	ExpectedGeneration uint64 `json:"expected_generation,omitempty"`
}

// ApplyResponse says what an apply did.
type ApplyResponse struct {
	Generation uint64 `json:"generation"`
	Unchanged  bool   `json:"unchanged"`
	Previous   string `json:"previous,omitempty"`
}

// SpecResponse is the stored spec.
type SpecResponse struct {
	YAML       string    `json:"yaml"`
	Generation uint64    `json:"generation"`
	AppliedAt  time.Time `json:"applied_at"`
	AppliedBy  string    `json:"applied_by"`
}

// PingResponse is one member's own view.
type PingResponse struct {
	Name       string `json:"name"`
	RaftState  string `json:"raft_state"`
	Leader     string `json:"leader"`
	Generation uint64 `json:"generation"`
	AppliedIdx uint64 `json:"applied_index"`
	// LastContactMS is how long ago a follower last heard from the leader;
	// -1 never, 0 for the leader itself.
	LastContactMS int64 `json:"last_contact_ms"`
}

// Health of a member as status reports it.
const (
	HealthHealthy     = "healthy"
	HealthUnreachable = "unreachable"
	HealthNoLeader    = "no-leader-contact"
	HealthBehind      = "behind"
)

// Status is the fleet as one agent sees it.
type Status struct {
	Node       string   `json:"node"`
	Leader     string   `json:"leader"`
	Generation uint64   `json:"generation"`
	Members    []Member `json:"members"`
	// Appliances are the storage appliances of the stored spec with what
	// each last reported, in spec order, as the answering agent's copy of
	// the state at AppliancesGeneration has them.
	Appliances           []ApplianceStatus `json:"appliances"`
	AppliancesGeneration uint64            `json:"appliances_generation"`
	// Shares are the replicated shares of the stored spec with their
	// failover state, in spec order, from the same copy of the state as
	// Appliances.
	Shares []ShareFailover `json:"shares,omitempty"`
}

// ShareFailover is the failover state of one replicated share.
type ShareFailover struct {
	Share string `json:"share"`
	// Active is the appliance whose copy is writable; Replica the other.
	Active  string `json:"active"`
	Replica string `json:"replica"`
	// Epoch rises with every failover; 0 until the first.
	Epoch uint64 `json:"epoch"`
	// Failover is the share's failover mode: auto, manual or off.
	Failover schema.Failover `json:"failover"`
	// Fenced is true when an appliance reports the share fenced (made
	// read-only because that appliance's lease lapsed); FencedOn names them.
	Fenced   bool     `json:"fenced"`
	FencedOn []string `json:"fenced_on,omitempty"`
}

// LeaseRequest renews a storage appliance's lease with the leader
// (POST /v1/lease). Only the appliance's own agent may renew it.
type LeaseRequest struct {
	// Appliance is the renewing appliance.
	Appliance string `json:"appliance"`
	// PreviousRTTMillis is the round trip the appliance measured for its
	// previous answered renewal; 0 when it has none yet.
	PreviousRTTMillis float64 `json:"previous_rtt_ms"`
}

// LeaseResponse answers a renewal.
type LeaseResponse struct {
	// Leader is the leader that counted the renewal.
	Leader string `json:"leader"`
	// AppliedIndex is the leader's applied Raft index when it answered. A
	// fenced appliance waits until it has applied as much before it trusts
	// its own copy of the share epochs.
	AppliedIndex uint64 `json:"applied_index"`
}

// WitnessStatus is the leader's view of the members' leases and the
// replicated shares (GET /v1/witness/status).
type WitnessStatus struct {
	// Leader is the leader that answered; renewals live in its memory.
	Leader string `json:"leader"`
	// LeaderSince is when it took office (and counted every appliance as
	// renewed).
	LeaderSince time.Time `json:"leader_since"`
	// Policy is the stored spec's witness policy.
	Policy WitnessPolicy `json:"policy"`
	// Members are the appliances of the stored spec, in spec order.
	Members []WitnessMember `json:"members"`
	// Shares are the replicated shares, in spec order.
	Shares []ShareFailover `json:"shares"`
}

// WitnessPolicy is the witness policy in force, in milliseconds.
type WitnessPolicy struct {
	FailoverAfterMS   int64           `json:"failover_after_ms"`
	FenceAfterMS      int64           `json:"fence_after_ms"`
	DegradedLatencyMS int64           `json:"degraded_latency_ms"`
	Failback          schema.Failback `json:"failback"`
}

// WitnessMember is one appliance's health as the leader sees it.
type WitnessMember struct {
	Name string      `json:"name"`
	Role schema.Role `json:"role"`
	// Lease is true for storage appliances, which renew a lease; a witness
	// appliance holds none and is pinged instead.
	Lease bool `json:"lease"`
	// Reachable: renewed within ReachableWindow (a witness appliance:
	// answered a ping).
	Reachable bool `json:"reachable"`
	// LastRenewalMS is how long ago the leader last counted a renewal (its
	// election counts as one); -1 for a witness appliance.
	LastRenewalMS int64 `json:"last_renewal_ms"`
	// RTTMillis is the round trip of the appliance's last measured renewal
	// (a witness appliance: of the ping); 0 when unknown.
	RTTMillis float64 `json:"rtt_ms"`
	// Degraded: RTTMillis is above the policy's degraded_latency.
	Degraded bool `json:"degraded"`
	// Error says why a witness appliance did not answer the ping.
	Error string `json:"error,omitempty"`
}

// ApplianceStatus is a storage appliance's last report.
type ApplianceStatus struct {
	Name string `json:"name"`
	// Reported is false until the appliance's agent has reported once.
	Reported bool `json:"reported"`
	store.NodeStatus
}

// Member is one member of the Raft group.
type Member struct {
	Name          string  `json:"name"`
	Address       string  `json:"address"`
	Voter         bool    `json:"voter"`
	Leader        bool    `json:"leader"`
	Reachable     bool    `json:"reachable"`
	RTTMillis     float64 `json:"rtt_ms"`
	Generation    uint64  `json:"generation"`
	LastContactMS int64   `json:"last_contact_ms"`
	Health        string  `json:"health"`
	Error         string  `json:"error,omitempty"`
}

// Client calls an agent's API with a fleet credential.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client for the agent at addr (host:port). wantName,
// when set, is the appliance the server's certificate must name.
func NewClient(addr string, creds pki.Credentials, wantName string) (*Client, error) {
	conf, err := pki.ClientConfig(creds, wantName, []string{protoAPI})
	if err != nil {
		return nil, err
	}
	// The overall timeout stays as a backstop; connecting is bounded on
	// its own so that an unreachable agent is reported in seconds.
	tr := &http.Transport{
		TLSClientConfig:     conf,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	return &Client{
		base: "https://" + addr,
		http: &http.Client{Timeout: 60 * time.Second, Transport: tr},
	}, nil
}

// Status returns the fleet's members and their health.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Spec returns the stored spec; consistent asks the leader, after it has
// confirmed it still leads.
func (c *Client) Spec(ctx context.Context, consistent bool) (*SpecResponse, error) {
	var s SpecResponse
	path := "/v1/spec"
	if consistent {
		path += "?consistent=1"
	}
	return &s, c.do(ctx, http.MethodGet, path, nil, &s)
}

// Apply stores a new spec.
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (*ApplyResponse, error) {
	var r ApplyResponse
	return &r, c.do(ctx, http.MethodPost, "/v1/spec", req, &r)
}

// SetNodeStatus stores what the agent name reports about itself; only
// that agent may call it.
func (c *Client) SetNodeStatus(ctx context.Context, name string, st store.NodeStatus) error {
	return c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/status", st, &struct{}{})
}

// Plan asks every storage appliance what it would do for a spec.
func (c *Client) Plan(ctx context.Context, yaml string) (*PlanResponse, error) {
	var p PlanResponse
	return &p, c.do(ctx, http.MethodPost, "/v1/plan", PlanRequest{YAML: yaml}, &p)
}

// ReplicationStatus lists every replicated share with its last success and
// its sending agent's view.
func (c *Client) ReplicationStatus(ctx context.Context) ([]ReplicationShare, error) {
	var out []ReplicationShare
	return out, c.do(ctx, http.MethodGet, "/v1/replication/status", nil, &out)
}

// Trail returns a share's replication trail, oldest first.
func (c *Client) Trail(ctx context.Context, share string) ([]store.TrailEntry, error) {
	var out []store.TrailEntry
	return out, c.do(ctx, http.MethodGet, "/v1/replication/trail?share="+url.QueryEscape(share), nil, &out)
}

// Replicate asks the share's sending agent for a replication run that
// starts after this call: now, or when the run going has ended. It
// returns the run's number, for WaitRun.
func (c *Client) Replicate(ctx context.Context, share string) (*RunResponse, error) {
	var out RunResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/replication/run?share="+url.QueryEscape(share), nil, &out)
}

// CurrentRun returns the number of the share's replication run going now
// (Run 0 when none is), for WaitRun.
func (c *Client) CurrentRun(ctx context.Context, share string) (*RunResponse, error) {
	var out RunResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/replication/run?now=0&share="+url.QueryEscape(share), nil, &out)
}

// WaitRun waits up to wait (at most 10 s) for replication run number run
// of share to end; the answer has its trail entry, or the progress so far.
func (c *Client) WaitRun(ctx context.Context, share string, run uint64, wait time.Duration) (*RunWaitResponse, error) {
	var out RunWaitResponse
	q := url.Values{"share": {share}, "run": {strconv.FormatUint(run, 10)}, "wait": {wait.String()}}
	return &out, c.do(ctx, http.MethodGet, "/v1/replication/wait?"+q.Encode(), nil, &out)
}

// Progress returns the sending agent's view of a share's replication.
func (c *Client) Progress(ctx context.Context, share string) (*reconcile.ShareReplication, error) {
	var out reconcile.ShareReplication
	return &out, c.do(ctx, http.MethodGet, "/v1/replication/progress?share="+url.QueryEscape(share), nil, &out)
}

// WitnessStatus returns the leader's view of every member's lease and of
// the replicated shares' failover state.
func (c *Client) WitnessStatus(ctx context.Context) (*WitnessStatus, error) {
	var ws WitnessStatus
	return &ws, c.do(ctx, http.MethodGet, "/v1/witness/status", nil, &ws)
}

// WitnessLog returns the witness log, oldest first.
func (c *Client) WitnessLog(ctx context.Context) ([]store.WitnessEvent, error) {
	var out []store.WitnessEvent
	return out, c.do(ctx, http.MethodGet, "/v1/witness/log", nil, &out)
}

// Failover runs a planned switchover of a share to its replica: the active
// appliance stops writes and sends a final incremental, then the roles swap.
func (c *Client) Failover(ctx context.Context, share, to string) (*FailoverResponse, error) {
	var out FailoverResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/failover", FailoverRequest{Share: share, To: to}, &out)
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// RemoveMember removes a member from the Raft group.
func (c *Client) RemoveMember(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(name), nil, &MemberResponse{})
}

// electionWait is how long a request waits out a leader election (several
// election timeouts) before reporting that there is no leader.
const electionWait = 15 * time.Second

// do sends a request, retrying while the fleet has no leader. Retrying an
// apply is safe: the same YAML again changes nothing.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(electionWait)
	wait := 100 * time.Millisecond
	for {
		err := c.once(ctx, method, path, b, out)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != CodeNoLeader || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w", c.base[len("https://"):], unwrapURLError(err))
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// decodeResponse reads a JSON answer into out, or an APIError.
func decodeResponse(resp *http.Response, out any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRequestBody))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(body, e) != nil || e.Message == "" {
			e.Code, e.Message = CodeInternal, fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return e
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return nil
}

func postJSON(ctx context.Context, client *http.Client, url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return unwrapURLError(err)
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}
