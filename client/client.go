// Package client is how anything talks to a fleet: the request and
// response types of the agents' API (types.go) and Client, which calls it
// over mutual TLS with a fleet credential. Every fleetctl command that
// talks to agents uses it, and so do the agents when they talk to each
// other's API (status reports, trail entries, lease renewals).
//
// The API's vocabulary comes from where it is defined: persisted records
// (trail entries, node status, witness events) are package store's types,
// a plan's actions and a sender's progress are package reconcile's.
package client

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
	"strings"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// ProtoAPI is the ALPN protocol of the agents' API on their one port (the
// Raft transport has its own).
const ProtoAPI = "http/1.1"

// MaxBody bounds a request or answer body of the API: the largest spec
// with room for the JSON around it.
const MaxBody = schema.MaxFileSize + 64<<10

// Client calls an agent's API with a fleet credential.
type Client struct {
	base  string
	creds pki.Credentials
	http  *http.Client

	mu    sync.Mutex
	peers map[string]*http.Client // by name@addr, for redirects
}

// HeaderMember names the member a redirect (307) sends a request to. The
// client follows a redirect only with it, and checks that the certificate
// of the agent it reaches names that member.
const HeaderMember = "X-Fleetctl-Member"

// maxRedirects bounds how many redirects one request follows: to the
// leader, and once more when leadership moved meanwhile.
const maxRedirects = 3

// NewClient returns a client for the agent at addr (host:port). wantName,
// when set, is the appliance the server's certificate must name.
//
// An agent answers a request that must run elsewhere (a write on the
// leader, a replication run on the share's sending agent) with a redirect
// naming the member; the client follows it with its own certificate, so
// the member that acts sees who asked, not the agent that passed it on.
func NewClient(addr string, creds pki.Credentials, wantName string) (*Client, error) {
	hc, err := httpClient(creds, wantName)
	if err != nil {
		return nil, err
	}
	return &Client{base: "https://" + addr, creds: creds, http: hc}, nil
}

// httpClient makes the HTTP client that reaches agents whose certificate
// names wantName ("" for any member of the fleet). It does not follow
// redirects itself: Client.once does, checking each target's name.
func httpClient(creds pki.Credentials, wantName string) (*http.Client, error) {
	conf, err := pki.ClientConfig(creds, wantName, []string{ProtoAPI})
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
	return &http.Client{
		Timeout:       60 * time.Second,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// peer returns the HTTP client for the member name at addr.
func (c *Client) peer(name, addr string) (*http.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := name + "@" + addr
	if hc, ok := c.peers[key]; ok {
		return hc, nil
	}
	hc, err := httpClient(c.creds, name)
	if err != nil {
		return nil, err
	}
	if c.peers == nil {
		c.peers = map[string]*http.Client{}
	}
	c.peers[key] = hc
	return hc, nil
}

// Status returns the fleet's members and their health.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Orphans lists the orphaned subvolumes the storage appliances reported.
func (c *Client) Orphans(ctx context.Context) (*OrphansResponse, error) {
	var out OrphansResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/orphans", nil, &out)
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

// Drill runs a disaster-recovery drill of a share on its replica (any
// agent redirects there) and answers when it is over: the clone made,
// the check run, the clone removed. ctx bounds it; no other timeout does.
func (c *Client) Drill(ctx context.Context, req DrillRequest) (*DrillResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out DrillResponse
	return &out, c.send(ctx, http.MethodPost, "/v1/replication/drill", b, &out, true)
}

// AppendTrail records a replication attempt in its share's trail; only
// agents may call it.
func (c *Client) AppendTrail(ctx context.Context, e store.TrailEntry) error {
	return c.do(ctx, http.MethodPost, "/v1/trails", e, &struct{}{})
}

// RenewLease renews the calling appliance's lease with the leader, once:
// a renewal is never retried, the next one is sent on schedule.
func (c *Client) RenewLease(ctx context.Context, req LeaseRequest) (*LeaseResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var resp LeaseResponse
	return &resp, c.once(ctx, http.MethodPost, "/v1/lease", body, &resp)
}

// Close releases the client's idle connections.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.peers {
		hc.CloseIdleConnections()
	}
}

// RecordSelf asks the leader to record the calling agent's own node
// certificate (agents only).
func (c *Client) RecordSelf(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/certs/self", struct{}{}, &struct{}{})
}

// RecordCert asks the fleet to accept an admin certificate the calling
// agent signed (agents only).
func (c *Client) RecordCert(ctx context.Context, certPEM []byte) (*CertInfo, error) {
	var out CertInfo
	return &out, c.do(ctx, http.MethodPost, "/v1/certs", RecordCertRequest{CertPEM: string(certPEM)}, &out)
}

// Certs lists the certificates the fleet accepts.
func (c *Client) Certs(ctx context.Context) ([]CertInfo, error) {
	var out []CertInfo
	return out, c.do(ctx, http.MethodGet, "/v1/certs", nil, &out)
}

// RevokeCert revokes an admin's certificates.
func (c *Client) RevokeCert(ctx context.Context, req RevokeRequest) (*RevokeResponse, error) {
	var out RevokeResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/certs/revoke", req, &out)
}

// CreateToken makes a join token.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*TokenResponse, error) {
	var out TokenResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/tokens", req, &out)
}

// Tokens lists the join tokens in force.
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	return out, c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
}

// RevokeToken revokes the join token with this ID.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, &struct{}{})
}

// RenewCert asks the leader to sign a new certificate for the calling
// agent (agents only).
func (c *Client) RenewCert(ctx context.Context, req RenewRequest) (*RenewResponse, error) {
	var out RenewResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/certs/renew", req, &out)
}

// AddMember asks the leader to add the calling node to the Raft group;
// only a node, naming itself, may.
func (c *Client) AddMember(ctx context.Context, req MemberRequest) (*MemberResponse, error) {
	var out MemberResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/members", req, &out)
}

// RemoveMember removes a member from the Raft group. The fleet refuses
// to remove a member that answers, or one active for a share, unless
// force; the answer then says what the removal left behind.
func (c *Client) RemoveMember(ctx context.Context, name string, force bool) (*MemberResponse, error) {
	var out MemberResponse
	path := "/v1/members/" + url.PathEscape(name)
	if force {
		path += "?force=1"
	}
	return &out, c.do(ctx, http.MethodDelete, path, nil, &out)
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
		if !errors.As(err, &ae) || ae.Code != CodeNoLeader && ae.Code != CodeUnreachable || time.Now().After(deadline) {
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
	return c.send(ctx, method, path, body, out, false)
}

// send sends a request once, following redirects. A long request (one
// answered only when its work is done, like a drill) has no overall
// timeout: ctx bounds it.
func (c *Client) send(ctx context.Context, method, path string, body []byte, out any, long bool) error {
	hc, base := c.http, c.base
	for hops := 0; ; hops++ {
		if long {
			untimed := *hc
			untimed.Timeout = 0
			hc = &untimed
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil && hops > 0 {
			// The member the fleet sent us to is gone (a leader that
			// died, not yet replaced): ask the first agent again.
			return &APIError{Code: CodeUnreachable, Message: fmt.Sprintf("cannot reach the agent at %s: %v", strings.TrimPrefix(base, "https://"), UnwrapURLError(err))}
		}
		if err != nil {
			return fmt.Errorf("cannot reach the agent at %s: %w", strings.TrimPrefix(base, "https://"), UnwrapURLError(err))
		}
		if resp.StatusCode != http.StatusTemporaryRedirect {
			defer resp.Body.Close()
			return DecodeResponse(resp, out)
		}
		resp.Body.Close()
		name, addr, err := redirectTarget(resp)
		if err != nil {
			return err
		}
		if hops+1 >= maxRedirects {
			return fmt.Errorf("the agents passed the request on %d times (last to %s); the fleet may be electing a leader: retry", maxRedirects, name)
		}
		if hc, err = c.peer(name, addr); err != nil {
			return err
		}
		base = "https://" + addr
	}
}

// redirectTarget reads the member and address a redirect sends to.
func redirectTarget(resp *http.Response) (name, addr string, err error) {
	name = resp.Header.Get(HeaderMember)
	loc, perr := url.Parse(resp.Header.Get("Location"))
	if name == "" || perr != nil || loc.Scheme != "https" || loc.Host == "" {
		return "", "", fmt.Errorf("the agent answered with a redirect that names no member (%s %q)", HeaderMember, name)
	}
	return name, loc.Host, nil
}

// UnwrapURLError returns the error under a *url.Error, which repeats the
// method and URL the caller already names.
func UnwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// DecodeResponse reads a JSON answer into out, or an APIError.
func DecodeResponse(resp *http.Response, out any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
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

// PostJSON posts body as JSON to url with client and decodes the answer
// into out (see DecodeResponse): for calls that need their own
// *http.Client, like a join with the token or a call between agents.
func PostJSON(ctx context.Context, client *http.Client, url string, body, out any) error {
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
		return UnwrapURLError(err)
	}
	defer resp.Body.Close()
	return DecodeResponse(resp, out)
}

// Snapshots lists every copy of share (every share when empty) on the
// storage appliances, of appliance only when it is not empty. An
// appliance that does not answer is in the answer's Errors; a share
// neither the spec nor any appliance knows is a not_found error.
func (c *Client) Snapshots(ctx context.Context, share, appliance string) (*SnapshotsResponse, error) {
	q := url.Values{}
	if share != "" {
		q.Set("share", share)
	}
	if appliance != "" {
		q.Set("appliance", appliance)
	}
	path := "/v1/snapshots"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out SnapshotsResponse
	return &out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Diverged lists what the old active of share wrote after its last
// replication snapshot, for each diverged snapshot on the storage
// appliances (of appliance only when it is not empty). An appliance that
// does not answer is in the answer's Errors; a share neither the spec
// nor any appliance knows is a not_found error.
func (c *Client) Diverged(ctx context.Context, share, appliance string) (*DivergedResponse, error) {
	q := url.Values{"share": {share}}
	if appliance != "" {
		q.Set("appliance", appliance)
	}
	var out DivergedResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/diverged?"+q.Encode(), nil, &out)
}

// GetJSON gets url with client and decodes the answer into out (see
// DecodeResponse), for calls between agents.
func GetJSON(ctx context.Context, client *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return UnwrapURLError(err)
	}
	defer resp.Body.Close()
	return DecodeResponse(resp, out)
}

// Restore restores from a copy of a share on the appliance that holds it
// (following the redirect there).
func (c *Client) Restore(ctx context.Context, req RestoreRequest) (*RestoreResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out RestoreResponse
	return &out, c.send(ctx, http.MethodPost, "/v1/restore", b, &out, true)
}

// Pools asks for the space of every storage appliance's pools.
func (c *Client) Pools(ctx context.Context) (*PoolsResponse, error) {
	var out PoolsResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/pools", nil, &out)
}
