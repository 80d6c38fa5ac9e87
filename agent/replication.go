package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file carries replication between agents: the sending agent streams
// `btrfs send` to the receiving agent's API over the fleet's mutual TLS
// (zstd-compressed when the spec says so), and both sides record every
// attempt in the share's trail in the Raft store.

// headerSend carries the reconcile.SendHeader of a replication stream, as
// base64 JSON; headerGeneration the sender's spec generation, which the
// receiver waits to have applied before it answers (right after an apply
// the receiver may lag the sender by a few milliseconds).
const (
	headerSend       = "X-Fleetctl-Send"
	headerGeneration = "X-Fleetctl-Generation"
)

// waitGeneration waits up to 10s for this agent's state to reach the
// generation a peer named in a request, and returns the state it has then.
func (n *Node) waitGeneration(r *http.Request) *store.State {
	want, _ := strconv.ParseUint(r.Header.Get(headerGeneration), 10, 64)
	deadline := time.After(10 * time.Second)
	for {
		st, changed := n.fsm.Watch()
		if st.Generation >= want {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			return st
		case <-r.Context().Done():
			return st
		}
	}
}

// startReplication starts this appliance's replicator (the sending side)
// and cleans its receiving side's incomplete receives once a spec is known.
func (n *Node) startReplication(ctx context.Context) {
	if n.cfg.Driver == nil {
		return
	}
	log := n.log.With("part", "replication")
	n.receiver = &reconcile.Receiver{Appliance: n.cfg.Name, Driver: n.cfg.Driver, Trail: n.recordTrail, Log: log, Active: n.activation}
	n.replicator = &reconcile.Replicator{Appliance: n.cfg.Name, Driver: n.cfg.Driver, Transport: &mtlsTransport{n: n}, Trail: n.recordTrail, Log: log, Active: n.activation}
	watch := func() (*schema.Spec, uint64, <-chan struct{}) {
		st, changed := n.fsm.Watch()
		return st.Spec, st.Generation, changed
	}
	n.goLoop(func() {
		// A receive cut off when this agent last stopped left a partial
		// subvolume: remove it before anything counts on the received dir.
		for {
			spec, _, changed := watch()
			if spec != nil {
				if err := n.receiver.CleanStaging(ctx, spec); err != nil {
					log.Warn("could not clean incomplete receives", "err", err)
				}
				// So did a drill: its clone goes.
				if err := n.receiver.CleanDrills(ctx, spec); err != nil {
					log.Warn("could not remove the clones of interrupted drills", "err", err)
				}
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
		// Replication does not wait for this agent to catch up, as the
		// reconciler does: a stale state can only make it send from a
		// fenced (read-only) copy, which a receiver at a newer epoch
		// refuses, or receive into .fleetctl/received, never into a share.
		n.replicator.Run(ctx, watch)
	})
	n.goLoop(func() { n.retryReturningTargets(ctx) })
}

// retryReturningTargets retries at once the failing replications to an
// appliance that reports its status again (an agent restarted, a link
// healed): its report is the first sign it is back, and without this the
// retry could be minutes away by the backoff. Reports are published only
// when they change, so an idle fleet nudges nothing.
func (n *Node) retryReturningTargets(ctx context.Context) {
	seen := map[string]time.Time{}
	for {
		st, changed := n.fsm.Watch()
		for name, ns := range st.Nodes {
			if name == n.cfg.Name || !ns.ReportedAt.After(seen[name]) {
				continue
			}
			first := seen[name].IsZero()
			seen[name] = ns.ReportedAt
			if first {
				continue // what was reported before this agent looked
			}
			if k := n.replicator.RetryTo(name); k > 0 {
				n.log.Info("replication target reported again; retrying its failed replications now", "target", name, "shares", k)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// recordTrail stores a replication attempt in the share's trail, through
// the leader. A failure is logged: the attempt itself is not undone.
func (n *Node) recordTrail(ctx context.Context, e reconcile.TrailEntry) {
	n.metrics.sent(e)
	cl, err := client.NewClient(n.cfg.Advertise, n.credentials(), n.cfg.Name)
	if err == nil {
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = cl.AppendTrail(ctx, store.TrailEntry(e))
	}
	if err != nil {
		n.log.Warn("could not record a replication attempt in the trail", "share", e.Share, "side", e.Side, "err", err)
	}
}

func (n *Node) handleAppendTrail(w http.ResponseWriter, r *http.Request) {
	var e store.TrailEntry
	if !readJSON(w, r, &e) {
		return
	}
	// Each side records its own attempts: the sender its sends, the
	// receiver its receives and drills, the holder of a copy its restores.
	recorder := e.From
	if e.Side == reconcile.SideReceive || e.Side == reconcile.SideDrill || e.Side == reconcile.SideRestore {
		recorder = e.To
	}
	if !requireSelf(w, r, recorder, "records its own replication attempts") {
		return
	}
	if _, err := n.apply(store.CmdAppendTrail, store.AppendTrail{Entry: e}); err != nil {
		writeApplyError(w, err)
		return
	}
	if e.Side == reconcile.SideRestore {
		// Restores are in the witness log too, beside the failovers: a
		// second entry, so that replaying the trail entry stays as it was.
		detail := e.Note + ": " + e.Result
		if e.Error != "" {
			detail += ": " + e.Error
		}
		if err := n.writeWitnessEvent(store.WitnessEvent{At: time.Now().UTC(), Member: e.To, Share: e.Share, Event: store.EventRestore, Detail: detail}); err != nil {
			n.log.Warn("could not record a restore in the witness log", "share", e.Share, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// readHeaderJSON decodes the header name of r (JSON, base64) into v, or
// answers 400 saying what (what) was wrong and reports false.
func readHeaderJSON(w http.ResponseWriter, r *http.Request, name, what string, v any) bool {
	raw, err := base64.StdEncoding.DecodeString(r.Header.Get(name))
	if err == nil {
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: what + ": " + err.Error()})
		return false
	}
	return true
}

// memberAddr returns the Raft address of the member named name.
func (n *Node) memberAddr(name string) (string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == name {
			return string(s.Address), nil
		}
	}
	return "", fmt.Errorf("no agent named %q has joined the fleet", name)
}

// mtlsTransport is reconcile.Transport over the fleet's mutual TLS.
type mtlsTransport struct{ n *Node }

// heldTimeout bounds asking a target what it holds: its answer may wait
// up to 10 s for the target to apply the sender's spec generation.
const heldTimeout = 15 * time.Second

// Held asks the target what it holds of share.
func (t *mtlsTransport) Held(ctx context.Context, target, share string) ([]reconcile.Subvolume, error) {
	c, addr, err := t.n.memberClient(target, peerQuick)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, heldTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/replication/held?share="+url.QueryEscape(share), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(headerGeneration, strconv.FormatUint(t.n.fsm.State().Generation, 10))
	resp, err := c.Do(req)
	if err != nil {
		return nil, client.UnwrapURLError(err) // the replicator says what it asked
	}
	defer resp.Body.Close()
	var held []reconcile.Subvolume
	if err := client.DecodeResponse(resp, &held); err != nil {
		return nil, err
	}
	return held, nil
}

// Send streams a btrfs send stream to the target's agent.
func (t *mtlsTransport) Send(ctx context.Context, target string, h reconcile.SendHeader, stream io.Reader) (reconcile.ReceiveResult, error) {
	var res reconcile.ReceiveResult
	// The receiver answers when the receive is done: the stream's length
	// is bounded by ctx only, the connection's phases by the pool.
	c, addr, err := t.n.memberClient(target, peerLong)
	if err != nil {
		return res, err
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		return res, err
	}
	// Send must not read the stream after it returns, but the HTTP client
	// may go on writing a request body after the response: the gate makes
	// later reads fail and waits for one in progress.
	gate := &gatedReader{r: stream}
	var body io.Reader = gate
	var compressed chan struct{}
	if h.Compression == schema.CompressionZstd {
		pr, pw := io.Pipe()
		compressed = make(chan struct{})
		go func() {
			defer close(compressed)
			zw, err := zstd.NewWriter(pw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
			if err == nil {
				_, err = io.Copy(zw, gate)
				if cerr := zw.Close(); err == nil {
					err = cerr
				}
			}
			pw.CloseWithError(err)
		}()
		defer func() {
			pr.CloseWithError(errors.New("replication stream closed"))
			<-compressed
		}()
		body = pr
	}
	defer gate.Close()
	// The bandwidth limit holds the bytes on the wire: compressed, when
	// they are.
	body = reconcile.PaceReader(ctx, body, h.BandwidthLimit)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/replication/receive", body)
	if err != nil {
		return res, err
	}
	req.Header.Set(headerSend, base64.StdEncoding.EncodeToString(hdr))
	req.Header.Set(headerGeneration, strconv.FormatUint(t.n.fsm.State().Generation, 10))
	req.Header.Set("Content-Type", "application/octet-stream")
	if compressed != nil {
		req.Header.Set("Content-Encoding", "zstd")
	}
	resp, err := c.Do(req)
	if err != nil {
		return res, fmt.Errorf("send %s to %s: %w", h.Share, target, client.UnwrapURLError(err))
	}
	defer resp.Body.Close()
	if err := client.DecodeResponse(resp, &res); err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) {
			switch ae.Status {
			case http.StatusForbidden:
				return res, fmt.Errorf("%s: %w: %s", target, reconcile.ErrRefused, ae.Message)
			case http.StatusConflict:
				return res, fmt.Errorf("%s: %w", target, reconcile.ErrBusy)
			}
		}
		return res, fmt.Errorf("%s failed the receive: %w", target, err)
	}
	return res, nil
}

// gatedReader passes reads through until Close, which waits for a read in
// progress and makes every later one fail.
type gatedReader struct {
	mu     sync.Mutex
	r      io.Reader
	closed bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errors.New("replication stream closed")
	}
	return g.r.Read(p)
}

// WriteTo copies the stream to w through a buffer of streamReadSize. The
// HTTP client copies a request body with io.Copy, which takes this over its
// own 32 KiB buffer: each write is one chunk of the chunked body, so the
// receiver parses 32 times fewer chunk headers and this side reads the
// pipe from btrfs send in fewer, larger reads. Only reads hold the gate, as
// in Read; a write blocked on the network does not hold up Close.
func (g *gatedReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, streamReadSize)
	var n int64
	for {
		k, rerr := g.Read(buf)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// streamReadSize is how much of a replication stream the sender reads and
// writes at a time: btrfs send's pipe holds 1 MiB.
const streamReadSize = 1 << 20

// Close stops the reader; it never closes the stream underneath.
func (g *gatedReader) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return nil
}

// replicationPeer returns the sending agent of a replication request (the
// access table lets only member agents call these routes; the handlers
// check that it is the share's source).
func replicationPeer(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := identityOf(r)
	if id.Role != pki.RoleNode {
		writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeForbidden, Message: "replication is agent to agent"})
		return "", false
	}
	return id.Name, true
}

func (n *Node) handleHeld(w http.ResponseWriter, r *http.Request) {
	peer, ok := replicationPeer(w, r)
	if !ok {
		return
	}
	spec := n.waitGeneration(r).Spec
	if spec == nil || n.receiver == nil {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeInternal, Message: n.cfg.Name + " has no spec or does not manage btrfs"})
		return
	}
	share := r.URL.Query().Get("share")
	// Only the share's source (its active appliance) may ask what this
	// appliance holds of it.
	sh := spec.Share(share)
	var source string
	if sh != nil {
		pl, _ := sh.Place(n.activation(share))
		source = pl.Active.Appliance
	}
	if sh == nil || source != peer {
		writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeUnauthorized, Message: fmt.Sprintf("%s is not the source of share %q", peer, share)})
		return
	}
	held, err := n.receiver.Held(r.Context(), spec, share)
	if err != nil {
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
		return
	}
	if held == nil {
		held = []reconcile.Subvolume{}
	}
	writeJSON(w, http.StatusOK, held)
}

func (n *Node) handleReceive(w http.ResponseWriter, r *http.Request) {
	peer, ok := replicationPeer(w, r)
	if !ok {
		return
	}
	var h reconcile.SendHeader
	if !readHeaderJSON(w, r, headerSend, "replication header", &h) {
		return
	}
	spec := n.waitGeneration(r).Spec
	if spec == nil || n.receiver == nil {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeInternal, Message: n.cfg.Name + " has no spec or does not manage btrfs"})
		return
	}
	var body io.Reader = r.Body
	switch r.Header.Get("Content-Encoding") {
	case "":
	case "zstd":
		zr, err := zstd.NewReader(r.Body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: err.Error()})
			return
		}
		defer zr.Close()
		body = zr
	default:
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "unknown Content-Encoding " + r.Header.Get("Content-Encoding")})
		return
	}
	res, err := n.receiver.Receive(r.Context(), spec, peer, h, body)
	switch {
	case errors.Is(err, reconcile.ErrRefused):
		writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeUnauthorized, Message: err.Error()})
	case errors.Is(err, reconcile.ErrBusy):
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
	case err != nil:
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// handleReplicationStatus lists every replicated share of the stored spec
// with its trail's last success and the sending agent's own view.
func (n *Node) handleReplicationStatus(w http.ResponseWriter, r *http.Request) {
	st := n.fsm.State()
	if st.Spec == nil {
		writeJSON(w, http.StatusOK, []client.ReplicationShare{})
		return
	}
	out := []client.ReplicationShare{}
	for _, sh := range st.Spec.Shares {
		if sh.Replication == nil || sh.State == schema.StateAbsent {
			continue
		}
		// After a failover the replica sends back to the spec's appliance.
		pl, _ := st.Place(&sh)
		rs := client.ReplicationShare{Share: sh.Name, From: pl.Active.Appliance, To: pl.Replica.String(), Epoch: pl.Epoch}
		trail := st.Trails[sh.Name]
		for i := len(trail) - 1; i >= 0; i-- {
			if trail[i].Side == reconcile.SideDrill {
				rs.LastDrill = &trail[i]
				break
			}
		}
		for i := len(trail) - 1; i >= 0; i-- {
			e := trail[i]
			if e.Side != reconcile.SideSend {
				continue
			}
			if rs.LastAttempt == nil {
				rs.LastAttempt = &trail[i]
			}
			if e.Result == "ok" {
				rs.LastSuccess, rs.LastSnapshot = e.End, e.Snapshot
				break
			}
		}
		from := time.Now()
		if rs.LastAttempt != nil {
			from = rs.LastAttempt.Start
		}
		rs.NextRun = sh.Replication.Schedule.Next(from)
		out = append(out, rs)
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func(rs *client.ReplicationShare) {
			defer wg.Done()
			src, err := n.sourceView(r.Context(), rs.From, rs.Share)
			if err != nil {
				rs.SourceError = err.Error()
				return
			}
			rs.Source = src
		}(&out[i])
	}
	wg.Wait()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Share < out[j].Share })
	writeJSON(w, http.StatusOK, out)
}

// sourceView asks the agent of appliance what its replicator knows of share.
func (n *Node) sourceView(ctx context.Context, appliance, share string) (*reconcile.ShareReplication, error) {
	if appliance == n.cfg.Name {
		return n.localProgress(share)
	}
	c, addr, err := n.memberClient(appliance, peerQuick)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/replication/progress?share="+url.QueryEscape(share), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, client.UnwrapURLError(err)
	}
	defer resp.Body.Close()
	var sr reconcile.ShareReplication
	return &sr, client.DecodeResponse(resp, &sr)
}

func (n *Node) localProgress(share string) (*reconcile.ShareReplication, error) {
	if n.replicator == nil {
		return nil, errors.New(n.cfg.Name + " does not manage btrfs")
	}
	for _, s := range n.replicator.Status() {
		if s.Share == share {
			return &s, nil
		}
	}
	return nil, fmt.Errorf("%s does not send %s", n.cfg.Name, share)
}

// handleProgress answers with this agent's replicator's view of a share,
// or redirects the caller to the share's sending agent.
func (n *Node) handleProgress(w http.ResponseWriter, r *http.Request) {
	share := r.URL.Query().Get("share")
	src, err := n.sourceOf(share)
	if err != nil {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: err.Error()})
		return
	}
	if src != n.cfg.Name {
		n.redirectTo(w, r, src)
		return
	}
	p, err := n.localProgress(share)
	if err != nil {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// maxRunWait bounds one wait request; callers wait again to show progress.
const maxRunWait = 10 * time.Second

// handleRun asks for a replication of a share on its sending agent: a run
// that starts after the request (the next one, when one is going), or,
// with now=0, the run going. It never fails because a run is going.
func (n *Node) handleRun(w http.ResponseWriter, r *http.Request) {
	share := r.URL.Query().Get("share")
	if _, ok := n.replicationSource(w, r, share); !ok {
		return
	}
	resp := client.RunResponse{Share: share, Running: n.replicator.Current(share)}
	if r.URL.Query().Get("now") == "0" {
		resp.Run = resp.Running
		writeJSON(w, http.StatusOK, resp)
		return
	}
	run, err := n.replicator.Trigger(share)
	if err != nil {
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
		return
	}
	resp.Run = run
	writeJSON(w, http.StatusOK, resp)
}

// handleWaitRun waits (up to wait=DURATION, at most maxRunWait) for run
// number run of a share to end on its sending agent, and answers with its
// trail entry, or with the progress so far when it has not ended.
func (n *Node) handleWaitRun(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	share := q.Get("share")
	run, err := strconv.ParseUint(q.Get("run"), 10, 64)
	if err != nil || run == 0 {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "run: want a run number from /v1/replication/run"})
		return
	}
	wait, err := time.ParseDuration(q.Get("wait"))
	if err != nil || wait <= 0 || wait > maxRunWait {
		wait = maxRunWait
	}
	if _, ok := n.replicationSource(w, r, share); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	e, done, err := n.replicator.Wait(ctx, share, run)
	switch {
	case err != nil:
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
	case done:
		entry := store.TrailEntry(e)
		writeJSON(w, http.StatusOK, client.RunWaitResponse{Done: true, Entry: &entry})
	default:
		resp := client.RunWaitResponse{}
		if p, err := n.localProgress(share); err == nil {
			resp.Progress = p
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// replicationSource passes a request about a share's runs to the share's
// sending agent and reports false, or reports true when that is this
// agent and it replicates. It answers the request itself on failure.
func (n *Node) replicationSource(w http.ResponseWriter, r *http.Request, share string) (string, bool) {
	src, err := n.sourceOf(share)
	if err != nil {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: err.Error()})
		return "", false
	}
	if src != n.cfg.Name {
		n.redirectTo(w, r, src)
		return "", false
	}
	if n.replicator == nil {
		writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeInternal, Message: n.cfg.Name + " does not manage btrfs"})
		return "", false
	}
	return src, true
}

// sourceOf names the appliance that sends a replicated share.
func (n *Node) sourceOf(share string) (string, error) {
	spec := n.fsm.State().Spec
	if spec == nil {
		return "", errors.New("no spec has been applied yet")
	}
	sh := spec.Share(share)
	if sh == nil {
		return "", fmt.Errorf("the spec has no share %q", share)
	}
	if sh.Replication == nil {
		return "", fmt.Errorf("share %q is not replicated (it has no replication:)", share)
	}
	pl, _ := sh.Place(n.activation(share))
	return pl.Active.Appliance, nil
}

// redirectTo sends the caller to the agent of appliance name.
func (n *Node) redirectTo(w http.ResponseWriter, r *http.Request, name string) {
	addr, err := n.memberAddr(name)
	if err != nil {
		writeError(w, http.StatusBadGateway, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
		return
	}
	redirect(w, r, name, addr)
}

// handleTrail answers with a share's recorded replication attempts: empty
// for a replicated share with none yet, the recorded ones for a share no
// longer replicated, and "not found" for a share that has neither, so a
// mistyped name is an error rather than an empty trail.
func (n *Node) handleTrail(w http.ResponseWriter, r *http.Request) {
	share := r.URL.Query().Get("share")
	trail := n.fsm.State().Trails[share]
	if len(trail) == 0 {
		if _, err := n.sourceOf(share); err != nil {
			writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("no replication trail of %q: %v", share, err)})
			return
		}
		trail = []store.TrailEntry{}
	}
	writeJSON(w, http.StatusOK, trail)
}
