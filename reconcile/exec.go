package reconcile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Result is what became of one action the executor was given.
type Result struct {
	// Action is the action.
	Action Action `json:"action"`
	// Err is why the action failed or was not run; nil when it succeeded.
	Err error `json:"-"`
	// Error is Err's text, for JSON; empty when the action succeeded.
	Error string `json:"error,omitempty"`
	// Skipped says the action was not attempted: a step it depends on
	// failed, or the context ended first. Err says which.
	Skipped bool `json:"skipped,omitempty"`
	// Duration is how long the action took.
	Duration time.Duration `json:"duration_ns"`
}

// ErrPrerequisite is wrapped by the error of an action skipped because a
// step it depends on failed.
var ErrPrerequisite = errors.New("a step it depends on failed")

// Execute runs the plan's actions through the driver, in order, and returns
// one Result per action that is not ReportOnly. An action fails alone: the
// rest go on, except those that depend on it, which are skipped with
// ErrPrerequisite (quotas or a snapshot of a share whose create or promote
// failed, a snapshot whose directory could not be made, pruning of a share
// whose new snapshot failed, the delete of a share whose final snapshot
// failed). When ctx ends, the actions not yet started are skipped with its
// error.
func Execute(ctx context.Context, d Driver, actions []Action) []Result {
	var results []Result
	failed := map[string]string{} // dependency key → what failed
	for _, a := range actions {
		if a.ReportOnly {
			continue
		}
		r := Result{Action: a}
		switch {
		case ctx.Err() != nil:
			r.Err, r.Skipped = fmt.Errorf("%s: not run: %w", describe(a), context.Cause(ctx)), true
		case blockedBy(a, failed) != "":
			r.Err, r.Skipped = fmt.Errorf("%s: not run: %w: %s", describe(a), ErrPrerequisite, blockedBy(a, failed)), true
		default:
			start := time.Now()
			if err := run(ctx, d, a); err != nil {
				r.Err = fmt.Errorf("%s: %w", describe(a), err)
			}
			r.Duration = time.Since(start)
		}
		if r.Err != nil {
			r.Error = r.Err.Error()
			if k := provides(a); k != "" {
				failed[k] = describe(a)
			}
		}
		results = append(results, r)
	}
	return results
}

// describe names an action in an error: "create-share projects on tank".
func describe(a Action) string {
	s := string(a.Kind)
	if a.Share != "" {
		s += " " + a.Share
	}
	return s + " on " + a.Pool
}

// provides is the key of the prerequisite an action establishes for later
// actions, or "".
func provides(a Action) string {
	switch a.Kind {
	case ActionEnableQuota:
		return "quota\x00" + a.Pool
	case ActionCreateShare, ActionPromote:
		return "share\x00" + a.Pool + "\x00" + a.Share
	case ActionMakeMetaDir:
		return "dir\x00" + a.Pool + "\x00" + a.Share
	case ActionSnapshot:
		return "snapshot\x00" + a.Pool + "\x00" + a.Share
	case ActionSetAside:
		return "aside\x00" + a.Pool + "\x00" + a.Share
	case ActionFinalSnapshot:
		return "final\x00" + a.Pool + "\x00" + a.Share
	}
	return ""
}

// blockedBy says which failed step an action depends on, or "".
func blockedBy(a Action, failed map[string]string) string {
	var needs []string
	switch a.Kind {
	case ActionSetQuota:
		needs = []string{"quota\x00" + a.Pool, "share\x00" + a.Pool + "\x00" + a.Share}
	case ActionClearQuota:
		needs = []string{"share\x00" + a.Pool + "\x00" + a.Share}
	case ActionSnapshot:
		needs = []string{"share\x00" + a.Pool + "\x00" + a.Share, "dir\x00" + a.Pool + "\x00" + a.Share}
	case ActionPruneSnapshot:
		// Retention counted the new snapshot: without it, pruning could
		// take the newest one there is.
		needs = []string{"snapshot\x00" + a.Pool + "\x00" + a.Share}
	case ActionPromote:
		// The stale copy must be out of the way first.
		needs = []string{"aside\x00" + a.Pool + "\x00" + a.Share}
	case ActionDeleteShare:
		// No delete without the final snapshot.
		needs = []string{"final\x00" + a.Pool + "\x00" + a.Share}
	}
	for _, k := range needs {
		if what, ok := failed[k]; ok {
			return what + " failed"
		}
	}
	return ""
}

func run(ctx context.Context, d Driver, a Action) error {
	switch a.Kind {
	case ActionEnableQuota:
		return d.EnableQuota(ctx, a.Path)
	case ActionCreateShare:
		return d.CreateSubvolume(ctx, a.Path)
	case ActionSetAside:
		// A rename within the pool's top directory: btrfs allows it for a
		// read-only subvolume, and nothing is deleted.
		if filepath.Dir(a.Source) != filepath.Dir(a.Path) {
			return fmt.Errorf("refusing to set %s aside as %s: not in the same directory", a.Source, a.Path)
		}
		return d.Rename(ctx, a.Source, a.Path)
	case ActionPromote:
		// A writable snapshot, not the received subvolume made writable:
		// clearing its ro flag would erase its received UUID, and the
		// read-only one is the common base of the next incremental.
		if !strings.Contains(a.Source, "/"+ReceivedDir+"/") {
			return fmt.Errorf("refusing to promote %s: not under %s", a.Source, ReceivedDir)
		}
		return d.Snapshot(ctx, a.Source, a.Path, false)
	case ActionKeepDiverged:
		if filepath.Base(filepath.Dir(a.Path)) != filepath.Base(DivergedDir) || !strings.Contains(a.Path, "/"+DivergedDir+"/") {
			return fmt.Errorf("refusing to keep diverged writes at %s: not in %s", a.Path, DivergedDir)
		}
		if err := d.MkdirAll(ctx, filepath.Dir(a.Path)); err != nil {
			return err
		}
		return d.Snapshot(ctx, a.Source, a.Path, true)
	case ActionSetQuota:
		if a.Quota == 0 {
			return errors.New("set-quota without a quota; use clear-quota")
		}
		return d.SetQuota(ctx, a.Path, a.Quota)
	case ActionClearQuota:
		return d.SetQuota(ctx, a.Path, 0)
	case ActionMakeMetaDir:
		return d.MkdirAll(ctx, a.Path)
	case ActionSnapshot:
		return d.Snapshot(ctx, a.Source, a.Path, true)
	case ActionPruneSnapshot:
		// The planner only prunes inside the snapshot directory; refuse
		// anything else rather than trust a hand-made plan.
		if !strings.Contains(a.Path, "/"+SnapshotDir+"/") {
			return fmt.Errorf("refusing to prune %s: not under %s", a.Path, SnapshotDir)
		}
		return d.DeleteSubvolume(ctx, a.Path)
	case ActionFinalSnapshot:
		if !isFinalSnapshotOf(a.Source, a.Share, a.Path) {
			return fmt.Errorf("refusing to take a final snapshot of %s at %s: not %s's final snapshot name in %s", a.Source, a.Path, a.Share, SnapshotDir)
		}
		if err := d.MkdirAll(ctx, filepath.Dir(a.Path)); err != nil {
			return err
		}
		return d.Snapshot(ctx, a.Source, a.Path, true)
	case ActionDeleteShare:
		if err := checkFinalSnapshot(ctx, d, a); err != nil {
			return err
		}
		return d.DeleteSubvolume(ctx, a.Path)
	}
	return fmt.Errorf("unknown action kind %q", a.Kind)
}

// isFinalSnapshotOf says final is a final snapshot name of the share at
// path: <pool>/.fleetctl/snapshots/<share>/<share>.final.<stamp> beside
// <pool>/<share>.
func isFinalSnapshotOf(path, share, final string) bool {
	if share == "" || filepath.Base(path) != share || !filepath.IsAbs(path) {
		return false
	}
	pool := filepath.Dir(path)
	if filepath.Dir(final) != filepath.Join(pool, SnapshotDir, share) {
		return false
	}
	_, ok := parseFinalName(share, filepath.Base(final))
	return ok
}

// checkFinalSnapshot refuses the delete of a share unless the action names
// the share's final snapshot and it exists, read-only: a hand-made plan, or
// one whose final snapshot vanished, deletes nothing.
func checkFinalSnapshot(ctx context.Context, d Driver, a Action) error {
	if !isFinalSnapshotOf(a.Path, a.Share, a.Source) {
		return fmt.Errorf("refusing to delete %s: the action names no final snapshot of it (%q)", a.Path, a.Source)
	}
	pool := filepath.Dir(a.Path)
	subs, err := d.Subvolumes(ctx, pool)
	if err != nil {
		return fmt.Errorf("refusing to delete %s: cannot check its final snapshot: %w", a.Path, err)
	}
	rel, err := filepath.Rel(pool, a.Source)
	if err != nil {
		return err
	}
	for _, sv := range subs {
		if sv.Path == rel {
			if !sv.ReadOnly {
				return fmt.Errorf("refusing to delete %s: its final snapshot %s is writable", a.Path, a.Source)
			}
			return nil
		}
	}
	return fmt.Errorf("refusing to delete %s: its final snapshot %s does not exist", a.Path, a.Source)
}
