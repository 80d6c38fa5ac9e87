package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// This file wires restores from a copy of a share (POST /v1/restore,
// admins only): any agent finds the copy with the fleet-wide listing of
// fleetctl snapshots and sends the caller to the appliance that holds it,
// which copies files out of it to a directory of the caller's choice, or
// snapshots it as a new writable subvolume in its pool, and records the
// restore (who, what, when) in the share's trail. Only an admin may ask:
// it writes anywhere on the appliance as the agent's user.

// maxRestoreList bounds the list of copied files in a restore's answer.
const maxRestoreList = 1000

// errRestoreNotFound marks a request naming a share or copy the fleet
// does not know.
var errRestoreNotFound = errors.New("not found")

// checkRestoreRequest checks a request's form before anything is looked
// up: a share and a copy named, and exactly one of --path/--to and --as.
func checkRestoreRequest(q client.RestoreRequest) error {
	switch {
	case q.Share == "":
		return errors.New("name the share to restore")
	case q.From == "":
		return errors.New("name the snapshot to restore from (--from), as fleetctl snapshots " + q.Share + " prints it")
	case q.InPlace && (q.As != "" || q.Path != "" || q.To != ""):
		return errors.New("--in-place restores the whole share from the snapshot; it takes no --as, --path or --to")
	case q.As != "" && (q.Path != "" || q.To != ""):
		return errors.New("--as makes a new share of the whole snapshot; it takes no --path or --to")
	case q.Pool != "" && q.As == "":
		return errors.New("--pool names where --as makes the new share; it needs --as")
	case (q.On != "" || q.Ticket != "") && q.As == "" && q.To == "":
		return errors.New("--on names where --as makes the new share or --to copies files; it needs one of them")
	case q.As == "" && q.To == "" && !q.InPlace:
		return errors.New("say what to restore: --path P --to DIR copies files out, --as NAME makes a new share of the snapshot, --in-place makes the share the snapshot again")
	}
	return nil
}

// matchSnapshot finds the copy of share that from names among copies
// (every share's): its path, or its last element when that is unique.
// A copy of another share, an unknown name and an ambiguous one are
// errors wrapping errRestoreNotFound or not (ambiguity).
func matchSnapshot(copies []client.ShareCopy, share, from string) (client.ShareCopy, error) {
	from = strings.TrimSuffix(from, "/")
	var hits []client.ShareCopy
	for _, c := range copies {
		if c.Path == from {
			hits = []client.ShareCopy{c}
			break
		}
		if !strings.Contains(from, "/") && filepath.Base(c.Path) == from {
			hits = append(hits, c)
		}
	}
	var mine []client.ShareCopy
	for _, c := range hits {
		if c.Share == share {
			mine = append(mine, c)
		}
	}
	switch {
	case len(mine) == 1:
		return mine[0], nil
	case len(mine) > 1:
		var paths []string
		for _, c := range mine {
			paths = append(paths, c.Appliance+":"+c.Path)
		}
		return client.ShareCopy{}, fmt.Errorf("snapshot %s names %d copies of %s (%s); give its path as fleetctl snapshots %s prints it", from, len(mine), share, strings.Join(paths, ", "), share)
	case len(hits) > 0:
		return client.ShareCopy{}, fmt.Errorf("%w: snapshot %s is a copy of share %s, not of %s", errRestoreNotFound, from, hits[0].Share, share)
	}
	return client.ShareCopy{}, fmt.Errorf("%w: no copy of %s is named %s (fleetctl snapshots %s lists them)", errRestoreNotFound, share, from, share)
}

// restorePlan says what a restore from c does, one step a line.
func restorePlan(c client.ShareCopy, q client.RestoreRequest, src, target string) []string {
	if q.As != "" {
		return []string{
			fmt.Sprintf("on %s: snapshot %s (%s copy of %s) as the new writable subvolume %s", c.Appliance, c.Path, c.Kind, c.Share, target),
			fmt.Sprintf("the spec does not change: %s becomes a share when you add it under shares: in fleet.yaml and apply it", q.As),
		}
	}
	what := src
	if src == c.Path {
		what = "everything in " + src
	}
	return []string{fmt.Sprintf("on %s: copy %s (cp --reflink=auto -a) from the %s copy of %s to %s", c.Appliance, what, c.Kind, c.Share, target)}
}

// handleRestore restores from a copy of a share on the appliance that
// holds it; any other agent redirects the caller there.
func (n *Node) handleRestore(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var q client.RestoreRequest
	if !readJSON(w, r, &q) {
		return
	}
	if err := checkRestoreRequest(q); err != nil {
		writeErr(w, http.StatusBadRequest, client.CodeBadRequest, err)
		return
	}
	spec := n.fsm.State().Spec
	if spec == nil {
		writeErr(w, http.StatusNotFound, client.CodeNotFound, errors.New("no spec has been applied yet"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), snapshotsTimeout)
	all := n.gatherCopies(ctx, spec, storageNames(spec, ""), "")
	cancel()
	known := spec.Share(q.Share) != nil
	for _, c := range all.Copies {
		known = known || c.Share == q.Share
	}
	if !known {
		writeErr(w, http.StatusNotFound, client.CodeNotFound, fmt.Errorf("no share %q: the spec has no share of that name and no storage appliance holds a copy of it", q.Share))
		return
	}
	c, err := matchSnapshot(all.Copies, q.Share, q.From)
	if err != nil {
		for _, e := range all.Errors {
			err = fmt.Errorf("%w (%s did not answer: %s)", err, e.Appliance, e.Error)
		}
		if errors.Is(err, errRestoreNotFound) {
			writeErr(w, http.StatusNotFound, client.CodeNotFound, err)
		} else {
			writeErr(w, http.StatusBadRequest, client.CodeBadRequest, err)
		}
		return
	}
	if q.InPlace {
		n.restoreInPlace(w, r, spec, c, q, start)
		return
	}
	if q.On != "" && q.On != c.Appliance {
		n.restoreOn(w, r, spec, c, q)
		return
	}
	if c.Appliance != n.cfg.Name {
		n.redirectTo(w, r, c.Appliance)
		return
	}
	var pool *schema.Pool
	if a := spec.Appliance(n.cfg.Name); a != nil {
		for i := range a.Pools {
			if a.Pools[i].Name == c.Pool {
				pool = &a.Pools[i]
			}
		}
	}
	if pool == nil {
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("%s has no pool %s in the spec any more", n.cfg.Name, c.Pool))
		return
	}
	if q.Pool != "" && q.Pool != pool.Name {
		writeErr(w, http.StatusConflict, client.CodeConflict, fmt.Errorf("--as on the copy's own appliance %s makes the new share in the copy's pool %s (a snapshot cannot cross filesystems), not %s", n.cfg.Name, pool.Name, q.Pool))
		return
	}

	var src, target string
	if q.As != "" {
		target, err = reconcile.CheckRestoreAs(spec, pool.Path, q.As)
	} else {
		src, err = reconcile.RestoreSource(c.Path, q.Path)
		if err == nil {
			err = reconcile.CheckRestoreDir(c.Path, q.To)
			target = filepath.Clean(q.To)
		}
	}
	switch {
	case errors.Is(err, reconcile.ErrRestoreInput):
		writeErr(w, http.StatusConflict, client.CodeConflict, err)
		return
	case err != nil:
		writeErr(w, http.StatusInternalServerError, client.CodeInternal, err)
		return
	}
	resp := client.RestoreResponse{Copy: c, DryRun: q.DryRun, Plan: restorePlan(c, q, src, target)}
	if q.As != "" {
		resp.NewShare, resp.YAML = target, reconcile.ShareYAML(q.As, n.cfg.Name, pool.Name)
	}
	if q.DryRun {
		writeJSON(w, http.StatusOK, resp)
		return
	}

	by := userOf(r)
	rel, _ := filepath.Rel(pool.Path, c.Path)
	e := reconcile.TrailEntry{ID: rand.Text(), Share: q.Share, Side: reconcile.SideRestore, From: n.cfg.Name, To: n.cfg.Name, Start: start, Snapshot: rel}
	if q.As != "" {
		e.Note = fmt.Sprintf("by %s: %s copy %s as the new subvolume %s", by, c.Kind, rel, target)
		err = n.cfg.Driver.Snapshot(r.Context(), c.Path, target, false)
	} else {
		what := q.Path
		if src == c.Path {
			what = "everything"
		}
		e.Note = fmt.Sprintf("by %s: %s from %s copy %s to %s", by, what, c.Kind, rel, target)
		resp.Copied, resp.Truncated, err = reconcile.RestoreFiles(r.Context(), c.Path, src, target, maxRestoreList)
	}
	e.End, e.Result = time.Now(), reconcile.ResultOK
	if err != nil {
		e.Result, e.Error = reconcile.ResultFailed, err.Error()
	}
	n.recordTrail(r.Context(), e)
	n.log.Info("restore", "share", q.Share, "by", by, "from", c.Path, "note", e.Note, "result", e.Result, "err", e.Error)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, client.CodeInternal, fmt.Errorf("restore failed (recorded in the trail of %s): %w", q.Share, err))
		return
	}
	te := store.TrailEntry(e)
	resp.Entry = &te
	writeJSON(w, http.StatusOK, resp)
}
