package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// The API is JSON over HTTPS on the agent's port. Every request needs a
// client certificate of the fleet's CA, except POST /v1/join, which a new
// node makes before it has one and which the join token authenticates
// instead. Who may call what, and where it runs, is access.go's table.

// noLeaderError explains why there is no leader: how many voters answer.
func (n *Node) noLeaderError(ctx context.Context) *client.APIError {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return &client.APIError{Code: client.CodeNoLeader, Message: "no leader: " + err.Error()}
	}
	var voters []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, s)
		}
	}
	if len(voters) == 0 {
		return &client.APIError{Code: client.CodeNoLeader, Message: fmt.Sprintf("no leader: %s is not a member of any fleet yet (bootstrap one or join it)", n.cfg.Name)}
	}
	pings := n.pingAll(ctx, voters)
	var up []string
	for _, s := range voters {
		if pings[s.ID].err == nil {
			up = append(up, string(s.ID))
		}
	}
	return &client.APIError{Code: client.CodeNoLeader, Message: fmt.Sprintf("no leader: %d of %d voters reachable (%s); a quorum needs %d",
		len(up), len(voters), strings.Join(up, ", "), len(voters)/2+1)}
}

type pingResult struct {
	resp client.PingResponse
	rtt  time.Duration
	err  error
}

// pingAll asks every given member for its view, concurrently, each within a
// second. This node answers for itself without the network.
func (n *Node) pingAll(ctx context.Context, servers []raft.Server) map[raft.ServerID]pingResult {
	out := make(map[raft.ServerID]pingResult, len(servers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		if string(s.ID) == n.cfg.Name {
			self := pingResult{resp: n.ping()}
			mu.Lock()
			out[s.ID] = self
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(s raft.Server) {
			defer wg.Done()
			res := n.pingMember(ctx, s)
			mu.Lock()
			out[s.ID] = res
			mu.Unlock()
		}(s)
	}
	wg.Wait()
	return out
}

func (n *Node) pingMember(ctx context.Context, s raft.Server) pingResult {
	hc, err := n.peerClient(string(s.ID), string(s.Address), peerQuick)
	if err != nil {
		return pingResult{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+string(s.Address)+"/v1/ping", nil)
	if err != nil {
		return pingResult{err: err}
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return pingResult{err: err}
	}
	defer resp.Body.Close()
	var pr client.PingResponse
	if err := client.DecodeResponse(resp, &pr); err != nil {
		return pingResult{err: err}
	}
	return pingResult{resp: pr, rtt: time.Since(start)}
}

func (n *Node) ping() client.PingResponse {
	st := n.fsm.State()
	leaderAddr, leaderID := n.raft.LeaderWithID()
	_ = leaderAddr
	pr := client.PingResponse{
		Name:       n.cfg.Name,
		RaftState:  strings.ToLower(n.raft.State().String()),
		Leader:     string(leaderID),
		Generation: st.Generation,
		AppliedIdx: n.raft.AppliedIndex(),
	}
	if n.raft.State() != raft.Leader {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			pr.LastContactMS = time.Since(lc).Milliseconds()
		} else {
			pr.LastContactMS = -1
		}
	}
	return pr
}

func (n *Node) handlePing(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.ping())
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
		return
	}
	servers := f.Configuration().Servers
	pings := n.pingAll(r.Context(), servers)
	_, leader := n.raft.LeaderWithID()
	// Members are compared with the leader's generation when it answers,
	// else with this node's.
	st := client.Status{Node: n.cfg.Name, Leader: string(leader), Generation: n.fsm.State().Generation}
	if p, ok := pings[leader]; ok && p.err == nil {
		st.Generation = p.resp.Generation
	}
	for _, s := range servers {
		p := pings[s.ID]
		m := client.Member{
			Name:    string(s.ID),
			Address: string(s.Address),
			Voter:   s.Suffrage == raft.Voter,
			Leader:  s.ID == leader,
		}
		if p.err != nil {
			m.Health, m.Error = client.HealthUnreachable, p.err.Error()
		} else {
			m.Reachable = true
			m.RTTMillis = float64(p.rtt.Microseconds()) / 1000
			m.Generation = p.resp.Generation
			m.LastContactMS = p.resp.LastContactMS
			m.Health = client.HealthHealthy
			switch {
			case !m.Leader && (p.resp.LastContactMS < 0 || p.resp.LastContactMS > 5000):
				m.Health = client.HealthNoLeader
			case p.resp.Generation < st.Generation:
				m.Health = client.HealthBehind
			}
		}
		st.Members = append(st.Members, m)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	local := n.fsm.State()
	st.Appliances, st.AppliancesGeneration = applianceStatuses(local), local.Generation
	st.Shares = shareFailovers(local)
	st.Warnings = certWarnings(local, n.ca.Cert, time.Now())
	st.Orphans = orphans(local)
	writeJSON(w, http.StatusOK, st)
}

func (n *Node) handleGetSpec(w http.ResponseWriter, r *http.Request) {
	serve := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("consistent") != "" {
			if err := n.raft.VerifyLeader().Error(); err != nil {
				writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: "lost leadership while reading: " + err.Error()})
				return
			}
		}
		st := n.fsm.State()
		writeJSON(w, http.StatusOK, client.SpecResponse{YAML: string(st.YAML), Generation: st.Generation, AppliedAt: st.AppliedAt, AppliedBy: st.AppliedBy})
	}
	if r.URL.Query().Get("consistent") != "" {
		n.onLeader(serve)(w, r)
		return
	}
	serve(w, r)
}

func (n *Node) handleApply(w http.ResponseWriter, r *http.Request) {
	var req client.ApplyRequest
	if !readJSON(w, r, &req) {
		return
	}
	spec, ok := parseForAPI(w, req.YAML)
	if !ok {
		return
	}
	if err := req.Approval.Check(); err != nil {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: err.Error()})
		return
	}
	// From the check to the commit, no other apply of this leader runs;
	// the compare-and-set catches one of a leader elected meanwhile.
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	st := n.fsm.State()
	expected := req.ExpectedGeneration
	if req.ExpectedGeneration == 0 || req.ExpectedGeneration == st.Generation {
		if hs := req.Approval.Unapproved(schema.Hazards(st.Spec, spec, n.applyFacts(st))); len(hs) > 0 {
			writeError(w, http.StatusConflict, approvalError(hs, st.Generation))
			return
		}
		expected = st.Generation
	}
	// The FSM takes the spec validated here instead of parsing the same
	// bytes again on the way of the apply (followers still parse them).
	yaml := []byte(req.YAML)
	n.fsm.Decoded(yaml, spec)
	resp, err := n.apply(store.CmdApplySpec, store.ApplySpec{
		YAML:               yaml,
		AppliedBy:          userOf(r),
		AppliedAt:          time.Now().UTC(),
		ExpectedGeneration: expected,
	})
	if err != nil {
		writeApplyError(w, err)
		return
	}
	res := resp.(store.ApplyResult)
	out := client.ApplyResponse{Generation: res.Generation, Unchanged: res.Unchanged, Previous: string(res.Previous)}
	// The diff the CLI prints, from the two specs decoded here, when the
	// spec replaced is the one read above (so st.Spec decodes it) and the
	// diff needs nothing more: a 1,000-share spec diffs in a few ms, where
	// the client would parse Previous first (about 30 ms).
	if !res.Unchanged && !schema.DiffNeedsActive(spec) &&
		(len(res.Previous) == 0 || st.Spec != nil && bytes.Equal(res.Previous, st.YAML)) {
		var prev *schema.Spec
		if len(res.Previous) > 0 {
			prev = st.Spec
		}
		changes := schema.Diff(prev, spec)
		out.Changes = &changes
	}
	writeJSON(w, http.StatusOK, out)
}

// applyFacts is what decides whether a spec's changes act on data now
// (schema.Facts): the CA's fleet, the bytes each share's active copy
// reported, and, on the leader, how long each storage appliance has gone
// without renewing its lease.
func (n *Node) applyFacts(st *store.State) schema.Facts {
	f := schema.Facts{CAFleet: n.ca.Fleet, Used: map[string]uint64{}, Silent: map[string]time.Duration{}}
	for _, ns := range st.Nodes {
		for _, sf := range ns.Shares {
			if sf.Exists && !sf.Demoted && sf.Referenced > f.Used[sf.Name] {
				f.Used[sf.Name] = sf.Referenced
			}
		}
	}
	if st.Spec == nil {
		return f
	}
	now := time.Now()
	n.wit.mu.Lock()
	defer n.wit.mu.Unlock()
	if !n.wit.leading {
		return f
	}
	for _, a := range st.Spec.Appliances {
		if a.Role != schema.RoleWitness {
			last, _ := n.wit.book.lastRenewal(a.Name)
			f.Silent[a.Name] = now.Sub(last)
		}
	}
	return f
}

// approvalError refuses a spec with hazards no one approved, found against
// the stored generation gen.
func approvalError(hs []schema.Hazard, gen uint64) *client.APIError {
	var what []string
	for _, h := range hs {
		what = append(what, h.Reason)
	}
	a := schema.ApprovalFor(hs)
	var how []string
	if len(a.Approve) > 0 {
		b, _ := json.Marshal(a.Approve)
		how = append(how, `"approve": `+string(b))
	}
	if a.RenameFleet {
		how = append(how, `"rename_fleet": true`)
	}
	if a.ReplaceAppliances {
		how = append(how, `"replace_appliances": true`)
	}
	needs := "1 change needs"
	if len(hs) > 1 {
		needs = fmt.Sprintf("%d changes need", len(hs))
	}
	return &client.APIError{
		Code: client.CodeApprovalRequired,
		Message: fmt.Sprintf("%s approval, nothing was changed: %s; approve with %s",
			needs, strings.Join(what, "; "), strings.Join(how, ", ")),
		Hazards:    hs,
		Generation: gen,
	}
}

func writeApplyError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrGenerationMismatch):
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: err.Error() + "; retry"})
	case errors.Is(err, store.ErrInvalidSpec):
		var problems schema.Errors
		errors.As(err, &problems)
		writeError(w, http.StatusUnprocessableEntity, &client.APIError{Code: client.CodeInvalidSpec, Message: "the spec is invalid", Problems: problems})
	default:
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
	}
}

func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req client.JoinRequest
	if !readJSON(w, r, &req) {
		return
	}
	tok, err := pki.ParseToken(req.Token)
	if err != nil || tok.CAPin != pki.SPKIPin(n.ca.Cert) || !tokenValid(n.joinTokenState(r.Context(), tok), tok, time.Now()) {
		n.log.Warn("join refused: unknown, expired or revoked token", "name", req.Name, "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeUnauthorized, Message: "the join token is not one this fleet accepts: wrong, expired (tokens last 24 h unless made with --ttl) or revoked; make a new one with 'fleetctl token create'"})
		return
	}
	if !schema.ValidName(req.Name) {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: fmt.Sprintf("%q is not a valid appliance name: lowercase letters, digits and '-', at most 63", req.Name)})
		return
	}
	if n.isMember(req.Name) {
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: fmt.Sprintf("%s is a member of the fleet already; a join cannot take its name. If that appliance lost its data dir, remove it first: fleetctl members remove %s", req.Name, req.Name)})
		return
	}
	id, _ := pki.SecretHash(tok)
	certPEM, _, ok := n.signNode(w, req.CSR, req.Name, req.Address, "join token "+id)
	if !ok {
		return
	}
	caKey, err := n.ca.KeyPEM()
	if err != nil {
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
		return
	}
	n.log.Info("issued a node certificate", "name", req.Name, "address", req.Address)
	writeJSON(w, http.StatusOK, client.JoinResponse{CACert: string(n.credentials().CACertPEM), CAKey: string(caKey), Cert: string(certPEM), Token: req.Token})
}

// fetchCredentials asks a member for a certificate with the join token,
// checking that the member's CA is the one the token pins.
func (n *Node) fetchCredentials(ctx context.Context) error {
	tok, err := pki.ParseToken(n.cfg.Token)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, n.cfg.Name)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.JoinConfig(tok, []string{client.ProtoAPI})}}
	defer hc.CloseIdleConnections()
	var resp client.JoinResponse
	err = retry(ctx, 30*time.Second, func() error {
		return client.PostJSON(ctx, hc, "https://"+n.cfg.Join+"/v1/join", client.JoinRequest{Name: n.cfg.Name, Address: n.cfg.Advertise, CSR: string(csr), Token: n.cfg.Token}, &resp)
	})
	if err != nil {
		return fmt.Errorf("join via %s: %w", n.cfg.Join, err)
	}
	joined, err := pki.ParseToken(resp.Token)
	if err != nil {
		return fmt.Errorf("join via %s: the member sent a bad token: %w", n.cfg.Join, err)
	}
	creds := pki.Credentials{CACertPEM: []byte(resp.CACert), CertPEM: []byte(resp.Cert), KeyPEM: keyPEM}
	if err := n.dir.writeCredentials(creds, []byte(resp.CAKey), joined); err != nil {
		return err
	}
	return n.loadCredentials()
}

// addSelf asks the leader (through the member it joined by) to add this
// node to the Raft configuration.
func (n *Node) addSelf(ctx context.Context) error {
	cl, err := client.NewClient(n.cfg.Join, n.credentials(), "")
	if err != nil {
		return err
	}
	defer cl.Close()
	var resp *client.MemberResponse
	err = retry(ctx, 60*time.Second, func() error {
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		resp, err = cl.AddMember(rctx, client.MemberRequest{Name: n.cfg.Name, Address: n.cfg.Advertise})
		return err
	})
	if err != nil {
		return fmt.Errorf("join via %s: %w", n.cfg.Join, err)
	}
	n.log.Info("joined the fleet", "via", n.cfg.Join, "voter", resp.Voter)
	return nil
}

// retry calls f until it succeeds, ctx ends or limit passes, backing off
// from 100ms to 2s. Refusals (4xx) are not retried.
func retry(ctx context.Context, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	wait := 100 * time.Millisecond
	for {
		err := f()
		var ae *client.APIError
		refused := errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500
		// A member whose CA is not the one the token pins will not change
		// its mind: say so at once.
		if err == nil || refused || errors.Is(err, pki.ErrPinMismatch) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, client.MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "request body: " + err.Error()})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e *client.APIError) {
	writeJSON(w, status, e)
}

// writeErr answers with err as an APIError of code.
func writeErr(w http.ResponseWriter, status int, code string, err error) {
	writeError(w, status, &client.APIError{Code: code, Message: err.Error()})
}

// applianceStatuses lists the storage appliances of the stored spec with
// what each last reported.
func applianceStatuses(st *store.State) []client.ApplianceStatus {
	if st.Spec == nil {
		return nil
	}
	var out []client.ApplianceStatus
	for _, a := range st.Spec.Appliances {
		if a.Role == schema.RoleWitness {
			continue
		}
		as := client.ApplianceStatus{Name: a.Name}
		if ns, ok := st.Nodes[a.Name]; ok {
			as.Reported = true
			as.NodeStatus = ns
		}
		out = append(out, as)
	}
	return out
}
