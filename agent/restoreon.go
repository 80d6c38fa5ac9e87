package agent

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file wires restores from a copy held by A onto another appliance B,
// agent to agent over the fleet's mutual TLS:
//
//   - fleetctl restore --as NEW --on B: the copy becomes the new share NEW
//     in a pool of B, sent in full with btrfs send (the replication
//     transport's stream);
//   - fleetctl restore --path P --to DIR --on B: files of the copy (say,
//     a diverged file, onto the share's active copy) land in DIR on B,
//     sent as a tar stream and extracted through an os.Root.
//
// Two admin requests do it, so that neither agent acts on its own say:
//
//  1. asked first, B checks what it can (the pool and the name; DIR) and
//     answers with a ticket: a secret good for one stream of that copy
//     from A, for ticketTTL;
//  2. asked again with the ticket, A sends the copy (or the files) to B
//     (POST /v1/restore/receive, A's node certificate and the ticket),
//     and B takes the stream only when both match what the admin asked.
//
// So a member agent can neither pull a copy of a share from another
// (A sends only when an admin asks it) nor push one into another's pool
// (B takes only what an admin asked it to take).

// ticketTTL is how long a ticket of a restore onto another appliance
// waits for the holder's stream.
const ticketTTL = 10 * time.Minute

// headerRestore carries a restoreStream header (JSON, base64).
const headerRestore = "X-Fleetctl-Restore"

// restoreTicket is one stream the receiving appliance will take: the copy
// as the new share name in pool, or the files at path in it into dir.
type restoreTicket struct {
	share, from, copyPath, by string
	name                      string
	pool                      schema.Pool
	path, dir                 string
	expires                   time.Time
}

// restoreTickets holds the tickets this agent handed out.
type restoreTickets struct {
	mu sync.Mutex
	m  map[string]restoreTicket
}

// add stores t under a new ticket and returns it.
func (ts *restoreTickets) add(t restoreTicket) string {
	id := rand.Text()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = map[string]restoreTicket{}
	}
	now := time.Now()
	for k, v := range ts.m {
		if now.After(v.expires) {
			delete(ts.m, k)
		}
	}
	ts.m[id] = t
	return id
}

// take removes the ticket id and returns it, if it was there and has
// not expired.
func (ts *restoreTickets) take(id string) (restoreTicket, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for k, v := range ts.m {
		if subtle.ConstantTimeCompare([]byte(k), []byte(id)) == 1 {
			delete(ts.m, k)
			return v, time.Now().Before(v.expires)
		}
	}
	return restoreTicket{}, false
}

// restoreStream is the header of a copy's stream to the appliance that
// handed out Ticket.
type restoreStream struct {
	Ticket string `json:"ticket"`
	Share  string `json:"share"`
	// Copy is the copy's path on the sender; Snapshot relative to its
	// pool; Kind its kind.
	Copy     string             `json:"copy"`
	Snapshot string             `json:"snapshot"`
	Kind     reconcile.CopyKind `json:"kind"`
	// UUID is the copy's send UUID, which the received copy must carry
	// (a btrfs stream).
	UUID string `json:"uuid,omitempty"`
	// Files says the stream is a tar of the files at Path in the copy.
	Files bool   `json:"files,omitempty"`
	Path  string `json:"path,omitempty"`
}

// restorePoolOn picks the pool of appliance a for a new share from a copy
// of share: the one named, else its only pool, else the share's pool on a.
func restorePoolOn(spec *schema.Spec, a *schema.Appliance, share, named string) (*schema.Pool, error) {
	if named != "" {
		if p := a.Pool(named); p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("%s has no pool %s", a.Name, named)
	}
	if len(a.Pools) == 1 {
		return &a.Pools[0], nil
	}
	if p := reconcile.SharePool(spec, spec.Share(share), a.Name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%s has %d pools: name one with --pool", a.Name, len(a.Pools))
}

// restoreOn serves POST /v1/restore with On naming another appliance
// than the copy's: without a ticket on that appliance (step 1), with one
// on the copy's (step 2).
func (n *Node) restoreOn(w http.ResponseWriter, r *http.Request, spec *schema.Spec, c client.ShareCopy, q client.RestoreRequest) {
	on := spec.Appliance(q.On)
	if on == nil || on.Role == schema.RoleWitness {
		writeErr(w, http.StatusNotFound, client.CodeNotFound, fmt.Errorf("--on %s: the spec has no storage appliance %s", q.On, q.On))
		return
	}
	var pool *schema.Pool
	if q.As != "" {
		var err error
		if pool, err = restorePoolOn(spec, on, q.Share, q.Pool); err != nil {
			writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("--on %s: %w", q.On, err))
			return
		}
	}
	if q.Ticket != "" {
		n.sendRestoreCopy(w, r, c, q)
		return
	}
	if n.cfg.Name != q.On {
		n.redirectTo(w, r, q.On)
		return
	}
	if n.cfg.Driver == nil {
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("%s does not manage btrfs", n.cfg.Name))
		return
	}
	t := restoreTicket{share: q.Share, from: c.Appliance, copyPath: c.Path, by: userOf(r), expires: time.Now().Add(ticketTTL)}
	resp := client.RestoreResponse{Copy: c, DryRun: q.DryRun}
	var err error
	if q.As != "" {
		var dst string
		if dst, err = reconcile.CheckRestoreAs(spec, pool.Path, q.As); err == nil {
			err = reconcile.CheckPoolMounted(r.Context(), n.cfg.Driver, pool.Path)
		}
		t.name, t.pool = q.As, *pool
		resp.NewShare, resp.YAML = dst, reconcile.ShareYAML(q.As, q.On, pool.Name)
		resp.Plan = []string{
			fmt.Sprintf("on %s: send %s (%s copy of %s) in full to %s over the replication transport (btrfs send, mutual TLS)", c.Appliance, c.Path, c.Kind, c.Share, q.On),
			fmt.Sprintf("on %s: receive it and make the new writable subvolume %s of it (the received copy is deleted after)", q.On, dst),
			fmt.Sprintf("the spec does not change: %s becomes a share when you add it under shares: in fleet.yaml and apply it", q.As),
		}
	} else {
		err = reconcile.CheckRestoreDir("", q.To)
		t.path, t.dir = q.Path, filepath.Clean(q.To)
		what := q.Path
		if p := filepath.Clean(q.Path); p == "." {
			what = "everything"
		}
		resp.Plan = []string{
			fmt.Sprintf("on %s: send %s of %s (%s copy of %s) to %s (a tar stream over mutual TLS)", c.Appliance, what, c.Path, c.Kind, c.Share, q.On),
			fmt.Sprintf("on %s: extract it into %s, nothing outside it", q.On, t.dir),
		}
	}
	switch {
	case errors.Is(err, reconcile.ErrRestoreInput):
		writeErr(w, http.StatusConflict, client.CodeConflict, err)
		return
	case err != nil:
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("--on %s: %w", q.On, err))
		return
	}
	if !q.DryRun {
		resp.Ticket = n.restoreTickets.add(t)
	}
	writeJSON(w, http.StatusOK, resp)
}

// sendRestoreCopy is step 2 on the copy's appliance: btrfs send of the
// copy to the appliance named by On, with the ticket it handed out.
func (n *Node) sendRestoreCopy(w http.ResponseWriter, r *http.Request, c client.ShareCopy, q client.RestoreRequest) {
	if n.cfg.Name != c.Appliance {
		n.redirectTo(w, r, c.Appliance)
		return
	}
	spec := n.fsm.State().Spec
	var pool *schema.Pool
	if a := spec.Appliance(n.cfg.Name); a != nil {
		pool = a.Pool(c.Pool)
	}
	if pool == nil || n.cfg.Driver == nil {
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("%s has no pool %s in the spec any more", n.cfg.Name, c.Pool))
		return
	}
	rel, _ := filepath.Rel(pool.Path, c.Path)
	h := restoreStream{Ticket: q.Ticket, Share: c.Share, Copy: c.Path, Snapshot: rel, Kind: c.Kind}
	var write func(context.Context, io.Writer) error
	if q.As != "" {
		uuid, err := reconcile.SendUUID(r.Context(), n.cfg.Driver, pool.Path, c.Path)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, client.CodeInternal, err)
			return
		}
		h.UUID = uuid
		write = func(ctx context.Context, w io.Writer) error { return n.cfg.Driver.Send(ctx, c.Path, "", w) }
	} else {
		src, err := reconcile.RestoreSource(c.Path, q.Path)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, reconcile.ErrRestoreInput) {
				code = http.StatusConflict
			}
			writeErr(w, code, client.CodeConflict, err)
			return
		}
		h.Files, h.Path = true, q.Path
		write = func(ctx context.Context, w io.Writer) error {
			skipped, err := reconcile.WriteTar(ctx, c.Path, src, w)
			if len(skipped) > 0 {
				n.log.Warn("restore: skipped what is not a file, directory or symbolic link", "copy", c.Path, "skipped", skipped)
			}
			return err
		}
	}
	res, err := n.streamRestore(r.Context(), q.On, h, write)
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) {
			writeError(w, ae.Status, ae)
			return
		}
		writeErr(w, http.StatusInternalServerError, client.CodeInternal, fmt.Errorf("send %s to %s: %w", c.Path, q.On, err))
		return
	}
	res.Copy = c
	writeJSON(w, http.StatusOK, res)
}

// streamRestore streams what write writes into POST /v1/restore/receive
// on the agent of target, and returns its answer.
func (n *Node) streamRestore(ctx context.Context, target string, h restoreStream, write func(context.Context, io.Writer) error) (client.RestoreResponse, error) {
	var res client.RestoreResponse
	hc, addr, err := n.memberClient(target, peerLong)
	if err != nil {
		return res, err
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		err := write(ctx, pw)
		pw.CloseWithError(err)
		sent <- err
	}()
	defer func() {
		pr.CloseWithError(errors.New("restore stream closed"))
		cancel()
		<-sent
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/restore/receive", pr)
	if err != nil {
		return res, err
	}
	req.Header.Set(headerRestore, base64.StdEncoding.EncodeToString(hdr))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return res, client.UnwrapURLError(err)
	}
	defer resp.Body.Close()
	return res, client.DecodeResponse(resp, &res)
}

// handleRestoreReceive takes the stream of a copy that this agent handed
// out a ticket for (step 2, on the appliance named by On): only from the
// copy's appliance, only that copy, once.
func (n *Node) handleRestoreReceive(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := identityOf(r)
	var h restoreStream
	if !readHeaderJSON(w, r, headerRestore, "restore header", &h) {
		return
	}
	t, ok := n.restoreTickets.take(h.Ticket)
	if !ok || id.Role != pki.RoleNode || t.from != id.Name || t.share != h.Share || t.copyPath != h.Copy || h.Files != (t.dir != "") || h.Path != t.path {
		writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeForbidden, Message: fmt.Sprintf("%s holds no ticket for this stream from %s (asked for by an admin, within %s, used once)", n.cfg.Name, id.Name, ticketTTL)})
		return
	}
	if h.Files {
		n.receiveRestoreFiles(w, r, t, h, start)
		return
	}
	spec := n.fsm.State().Spec
	dst, err := reconcile.CheckRestoreAs(spec, t.pool.Path, t.name)
	if err != nil {
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
		return
	}
	bytes, err := reconcile.ReceiveAs(r.Context(), n.cfg.Driver, t.pool.Path, dst, h.UUID, r.Body)
	e := reconcile.TrailEntry{ID: rand.Text(), Share: t.share, Side: reconcile.SideRestore, From: t.from, To: n.cfg.Name, Start: start, End: time.Now(),
		Snapshot: h.Snapshot, Bytes: bytes, Result: reconcile.ResultOK,
		Note: fmt.Sprintf("by %s: %s copy %s sent from %s as the new subvolume %s", t.by, h.Kind, h.Snapshot, t.from, dst)}
	if err != nil {
		e.Result, e.Error = reconcile.ResultFailed, err.Error()
	}
	n.recordTrail(r.Context(), e)
	n.log.Info("restore received", "share", t.share, "by", t.by, "from", t.from, "copy", h.Copy, "new", dst, "bytes", bytes, "result", e.Result, "err", e.Error)
	if err != nil {
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: fmt.Sprintf("restore failed on %s (recorded in the trail of %s): %v", n.cfg.Name, t.share, err)})
		return
	}
	te := store.TrailEntry(e)
	writeJSON(w, http.StatusOK, client.RestoreResponse{NewShare: dst, YAML: reconcile.ShareYAML(t.name, n.cfg.Name, t.pool.Name), Bytes: bytes, Entry: &te})
}

// receiveRestoreFiles extracts a ticket's tar stream of files into its
// directory and records the restore.
func (n *Node) receiveRestoreFiles(w http.ResponseWriter, r *http.Request, t restoreTicket, h restoreStream, start time.Time) {
	if err := reconcile.CheckRestoreDir("", t.dir); err != nil {
		writeError(w, http.StatusConflict, &client.APIError{Code: client.CodeConflict, Message: err.Error()})
		return
	}
	made, more, bytes, err := reconcile.ExtractTar(r.Context(), r.Body, t.dir, maxRestoreList)
	what := t.path
	if filepath.Clean(what) == "." {
		what = "everything"
	}
	e := reconcile.TrailEntry{ID: rand.Text(), Share: t.share, Side: reconcile.SideRestore, From: t.from, To: n.cfg.Name, Start: start, End: time.Now(),
		Snapshot: h.Snapshot, Bytes: bytes, Result: reconcile.ResultOK,
		Note: fmt.Sprintf("by %s: %s from %s copy %s on %s to %s", t.by, what, h.Kind, h.Snapshot, t.from, t.dir)}
	if err != nil {
		e.Result, e.Error = reconcile.ResultFailed, err.Error()
	}
	n.recordTrail(r.Context(), e)
	n.log.Info("restore received", "share", t.share, "by", t.by, "from", t.from, "copy", h.Copy, "path", t.path, "dir", t.dir, "bytes", bytes, "result", e.Result, "err", e.Error)
	if err != nil {
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: fmt.Sprintf("restore failed on %s (recorded in the trail of %s): %v", n.cfg.Name, t.share, err)})
		return
	}
	te := store.TrailEntry(e)
	writeJSON(w, http.StatusOK, client.RestoreResponse{Copied: made, Truncated: more, Bytes: bytes, Entry: &te})
}
