package reconcile

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// Observed is what the agent found on its appliance's pools.
type Observed struct {
	// Pools are the observations by pool name.
	Pools map[string]PoolObservation `json:"pools"`
}

// PoolObservation is what the driver reported about one pool.
type PoolObservation struct {
	// Path is the pool's mount path.
	Path string `json:"path"`
	// Err is set when the pool could not be observed (not a mounted btrfs,
	// a command failed); nothing is planned for the pool then but a
	// pool-error action.
	Err string `json:"error,omitempty"`
	// QuotaEnabled says whether btrfs quotas are enabled on the pool.
	QuotaEnabled bool `json:"quota_enabled"`
	// Subvolumes are every subvolume of the pool, in the driver's order.
	Subvolumes []Subvolume `json:"subvolumes,omitempty"`
	// Qgroups are the level-0 qgroups by subvolume ID; nil when quotas are
	// disabled.
	Qgroups map[uint64]Qgroup `json:"qgroups,omitempty"`
}

// ActionKind says what an action does.
type ActionKind string

// The kinds of action, in the order Plan puts them within a pool.
const (
	ActionEnableQuota   ActionKind = "enable-quota"   // enable btrfs quotas on a pool
	ActionCreateShare   ActionKind = "create-share"   // create a share's subvolume
	ActionSetAside      ActionKind = "set-aside"      // rename a stale copy of a share aside (kept) so the newest received data can be promoted
	ActionPromote       ActionKind = "promote"        // make the share a writable snapshot of its newest received snapshot
	ActionKeepDiverged  ActionKind = "keep-diverged"  // keep a demoted share's unreplicated writes as a read-only snapshot
	ActionSetQuota      ActionKind = "set-quota"      // set a share's qgroup limit
	ActionClearQuota    ActionKind = "clear-quota"    // remove a share's qgroup limit
	ActionMakeMetaDir   ActionKind = "make-meta-dir"  // make a directory under .fleetctl (idempotent)
	ActionSnapshot      ActionKind = "snapshot"       // take a read-only snapshot of a share
	ActionPruneSnapshot ActionKind = "prune-snapshot" // delete a snapshot retention no longer keeps
	ActionFinalSnapshot ActionKind = "final-snapshot" // keep a read-only snapshot of a share about to be deleted
	ActionDeleteShare   ActionKind = "delete-share"   // delete a share marked state: absent, after its final snapshot
	ActionBlocked       ActionKind = "blocked"        // report: the spec cannot be met without a person
	ActionDemoted       ActionKind = "demoted"        // report: another appliance is active for the share, this copy is kept
	ActionOrphaned      ActionKind = "orphaned"       // report: a subvolume no share names, kept
	ActionPoolError     ActionKind = "pool-error"     // report: the pool could not be observed
)

// Action is one step of a plan: something the executor does to btrfs, or,
// when ReportOnly, something only shown.
type Action struct {
	// Kind says what the action does.
	Kind ActionKind `json:"kind"`
	// Pool is the name of the pool acted on.
	Pool string `json:"pool"`
	// Share is the share acted on; for orphaned, the subvolume's name.
	Share string `json:"share,omitempty"`
	// Path is the absolute path acted on: the pool's mount path for
	// enable-quota, the directory for make-meta-dir, the new snapshot for
	// snapshot, final-snapshot and keep-diverged, the share for promote,
	// the subvolume otherwise.
	Path string `json:"path,omitempty"`
	// Source is the subvolume a snapshot, final-snapshot, promote or
	// keep-diverged action snapshots; for delete-share, the share's final
	// snapshot, which must exist, read-only, before the share is deleted.
	Source string `json:"source,omitempty"`
	// Quota and OldQuota are the limit in bytes after and before a quota
	// action; 0 is none.
	Quota    uint64 `json:"quota,omitempty"`
	OldQuota uint64 `json:"old_quota,omitempty"`
	// Detail is the short note shown in parentheses on the diff line.
	Detail string `json:"detail,omitempty"`
	// Reason says in one sentence why the action is planned.
	Reason string `json:"reason"`
	// ReportOnly actions (orphaned, pool-error, blocked, demoted) are shown
	// and never executed.
	ReportOnly bool `json:"report_only,omitempty"`
}

// Symbol is the diff symbol of the action: + adds, ~ changes, - destroys,
// ! reports.
func (a Action) Symbol() string {
	switch a.Kind {
	case ActionCreateShare, ActionMakeMetaDir, ActionSnapshot, ActionPromote, ActionKeepDiverged, ActionFinalSnapshot:
		return "+"
	case ActionSetQuota, ActionClearQuota, ActionEnableQuota, ActionSetAside:
		return "~"
	case ActionDeleteShare, ActionPruneSnapshot:
		return "-"
	}
	return "!"
}

// String is the action's diff line, like "+ create share projects (quota
// 200GiB)" or "- delete share old (state: absent)".
func (a Action) String() string {
	var head string
	switch a.Kind {
	case ActionEnableQuota:
		head = "enable quotas on pool " + a.Pool
	case ActionCreateShare:
		head = "create share " + a.Share
	case ActionSetAside:
		head = "set aside share " + a.Share
	case ActionPromote:
		head = "promote share " + a.Share
	case ActionKeepDiverged:
		head = "keep diverged writes of share " + a.Share
	case ActionDemoted:
		head = "demoted share " + a.Share
	case ActionSetQuota, ActionClearQuota:
		head = "quota " + a.Share + " " + quotaText(a.OldQuota) + " → " + quotaText(a.Quota)
	case ActionMakeMetaDir:
		head = "directory " + SnapshotDir + "/" + a.Share + " on pool " + a.Pool
	case ActionSnapshot:
		head = "snapshot " + a.Share
	case ActionPruneSnapshot:
		head = "prune snapshot " + filepath.Base(a.Path)
	case ActionFinalSnapshot:
		head = "final snapshot of share " + a.Share
	case ActionDeleteShare:
		head = "delete share " + a.Share
	case ActionOrphaned:
		head = "orphaned share " + a.Share
	case ActionBlocked:
		head = "blocked share " + a.Share
	case ActionPoolError:
		head = "pool " + a.Pool + " unavailable"
	default:
		head = string(a.Kind) + " " + a.Share
	}
	if a.Detail != "" {
		head += " (" + a.Detail + ")"
	}
	return a.Symbol() + " " + head
}

func quotaText(q uint64) string {
	if q == 0 {
		return "none"
	}
	return schema.Quota(q).String()
}

// PlanInput is everything Plan decides from.
type PlanInput struct {
	// Spec is the desired state of the fleet, with defaults applied.
	Spec *schema.Spec
	// Appliance is the appliance the plan is for.
	Appliance string
	// Observed is what the appliance's pools hold now.
	Observed Observed
	// Now is the time the plan is made at. Cron schedules are read in its
	// location; snapshot names are in UTC.
	Now time.Time
	// Protected are absolute snapshot paths a replication still needs; they
	// are never pruned.
	Protected map[string]bool
	// Active says, by share, which appliance holds the writable copy of a
	// replicated share and at which failover epoch, as the Raft store
	// keeps it. A share missing here is as the spec says: active on its
	// appliance at epoch 0. The share is planned at its effective
	// placement, the pool of its active appliance (SharePool); another
	// appliance's copy is demoted: reported and kept, never recreated.
	Active map[string]schema.Activation
}

// placement is where the share's copies are per the input's activations.
func (in PlanInput) placement(sh *schema.Share) schema.Placement {
	pl, _ := sh.Place(in.Active[sh.Name])
	return pl
}

// Plan decides what to do to make the appliance's pools match the spec. It
// is pure: the same input gives the same actions, in the same order.
//
// Per pool, in spec order: enable-quota, create-share or promote,
// keep-diverged, set/clear-quota, make-meta-dir, snapshot, prune-snapshot,
// final-snapshot and delete-share (each share's pair together), then the
// report-only actions (blocked, demoted, orphaned); shares in spec order. A pool that could not be observed gets one
// pool-error action and nothing else.
//
// A share is planned on the pool of its effective placement (see
// PlanInput.Active). There, when its subvolume is missing, it is promoted
// from the newest completed received snapshot if the pool holds one,
// created empty only while no failover ever happened (epoch 0, on the
// spec's appliance), and blocked otherwise. The copy of an appliance that
// is no longer active is demoted: reported, its unreplicated writes kept
// as a diverged snapshot, nothing else changed.
//
// Nothing is ever deleted but a share marked state: absent and snapshots
// that retention no longer keeps; a subvolume no share names is reported as
// orphaned and kept. A share is deleted only on its active appliance, and
// only after a read-only final snapshot of it (final-snapshot, right
// before the delete; see FinalSnapshotPath), which retention never prunes.
func Plan(in PlanInput) []Action {
	if in.Spec == nil {
		return nil
	}
	a := in.Spec.Appliance(in.Appliance)
	if a == nil {
		return nil
	}
	var out []Action
	for _, p := range a.Pools {
		out = append(out, planPool(in, p)...)
	}
	return out
}

// snapshotFile is one of a share's snapshots found on disk.
type snapshotFile struct {
	rel      string // relative to the pool
	time     time.Time
	readOnly bool
}

// poolPlanner plans one observed pool. Actions are collected by kind and
// joined in plan order at the end.
type poolPlanner struct {
	in    PlanInput
	pool  schema.Pool
	obs   PoolObservation
	stamp string // now, as a snapshot name's stamp

	top      map[string]Subvolume      // subvolumes directly in the pool, by name
	nested   map[string][]string       // name → subvolumes below that name
	snaps    map[string][]snapshotFile // share → its snapshots, oldest first
	finals   map[string][]finalSnap    // share → its final snapshots, oldest first
	received map[string][]receivedSnap // share → its completed received snapshots, oldest first
	repl     map[string][]sourceSnap   // share → its replication snapshots, oldest first
	diverged map[string][]Subvolume    // share → its diverged snapshots

	needQuota []string // shares whose quota needs quotas enabled

	enable, create, keep, quota, meta, snap, prune, del, blocked, demote, orphaned []Action
}

func planPool(in PlanInput, p schema.Pool) []Action {
	obs, ok := in.Observed.Pools[p.Name]
	if !ok {
		obs.Err = "the pool was not observed"
	}
	if obs.Err != "" {
		return []Action{{
			Kind: ActionPoolError, Pool: p.Name, Path: p.Path, ReportOnly: true,
			Detail: obs.Err,
			Reason: fmt.Sprintf("pool %s at %s could not be observed, so nothing is planned for it: %s", p.Name, p.Path, obs.Err),
		}}
	}

	pp := &poolPlanner{
		in: in, pool: p, obs: obs,
		stamp:    in.Now.UTC().Format(StampFormat),
		top:      map[string]Subvolume{},
		nested:   map[string][]string{},
		snaps:    map[string][]snapshotFile{},
		finals:   map[string][]finalSnap{},
		received: map[string][]receivedSnap{},
		repl:     map[string][]sourceSnap{},
		diverged: map[string][]Subvolume{},
	}
	pp.scan(obs.Subvolumes)

	named := map[string]bool{}
	for i := range in.Spec.Shares {
		sh := &in.Spec.Shares[i]
		if pool := SharePool(in.Spec, sh, in.Appliance); pool == nil || pool.Name != p.Name {
			continue
		}
		act := in.placement(sh)
		_, exists := pp.top[sh.Name]
		switch {
		case act.Active.Appliance == in.Appliance:
			named[sh.Name] = true
			pp.active(sh, act)
		case in.Appliance == sh.Appliance || (act.Epoch > 0 && exists):
			// The spec's appliance, or a replica that was active once.
			named[sh.Name] = true
			pp.demoted(sh, act)
		}
		// Otherwise this is the replica: what it holds is under MetaDir.
	}
	if len(pp.needQuota) > 0 {
		who := strings.Join(pp.needQuota, ", ")
		pp.enable = append(pp.enable, Action{
			Kind: ActionEnableQuota, Pool: p.Name, Path: p.Path,
			Detail: "needed by " + who,
			Reason: fmt.Sprintf("btrfs enforces a quota only when quotas are enabled on the pool, and %s %s one", who, hasHave(len(pp.needQuota))),
		})
	}

	var orphans []string
	for name := range pp.top {
		if name != MetaDir && !named[name] {
			orphans = append(orphans, name)
		}
	}
	slices.Sort(orphans)
	for _, name := range orphans {
		pp.orphaned = append(pp.orphaned, Action{
			Kind: ActionOrphaned, Pool: p.Name, Share: name, Path: filepath.Join(p.Path, name), ReportOnly: true,
			Detail: "not in spec, kept",
			Reason: pp.orphanReason(name),
		})
	}

	return slices.Concat(pp.enable, pp.create, pp.keep, pp.quota, pp.meta, pp.snap, pp.prune, pp.del, pp.blocked, pp.demote, pp.orphaned)
}

// scan sorts the pool's subvolumes: shares and other subvolumes at the top,
// and fleetctl's own under MetaDir (snapshots, replication snapshots,
// completed received snapshots, diverged snapshots), by share.
func (pp *poolPlanner) scan(subs []Subvolume) {
	for _, sv := range subs {
		top, rest, isNested := strings.Cut(sv.Path, "/")
		switch {
		case !isNested:
			pp.top[sv.Path] = sv
			continue
		case top != MetaDir:
			pp.nested[top] = append(pp.nested[top], sv.Path)
			continue
		}
		kind, rest, _ := strings.Cut(rest, "/")
		if kind == filepath.Base(DivergedDir) {
			if share, ok := divergedShare(rest); ok && !strings.Contains(rest, "/") {
				pp.diverged[share] = append(pp.diverged[share], sv)
			}
			continue
		}
		share, name, ok := strings.Cut(rest, "/")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		switch MetaDir + "/" + kind {
		case SnapshotDir:
			if t, ok := parseSnapshotName(share, name); ok {
				pp.snaps[share] = append(pp.snaps[share], snapshotFile{sv.Path, t, sv.ReadOnly})
			} else if t, ok := parseFinalName(share, name); ok {
				pp.finals[share] = append(pp.finals[share], finalSnap{sv: sv, time: t})
			}
		case ReceivedDir:
			if t, ok := parseSnapshotName(share, name); ok {
				if s := (receivedSnap{sv: sv, name: name, time: t, final: true}); s.complete() {
					pp.received[share] = append(pp.received[share], s)
				}
			}
		case ReplicationDir:
			if t, ok := parseStamp(name); ok && sv.ReadOnly {
				pp.repl[share] = append(pp.repl[share], sourceSnap{name: name, time: t, sv: sv})
			}
		}
	}
	for _, s := range pp.snaps {
		slices.SortFunc(s, func(a, b snapshotFile) int { return a.time.Compare(b.time) })
	}
	for _, s := range pp.finals {
		slices.SortFunc(s, func(a, b finalSnap) int { return a.time.Compare(b.time) })
	}
	for _, s := range pp.received {
		slices.SortFunc(s, func(a, b receivedSnap) int { return a.time.Compare(b.time) })
	}
	for _, s := range pp.repl {
		slices.SortFunc(s, func(a, b sourceSnap) int { return a.time.Compare(b.time) })
	}
}

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

// absent plans a share marked state: absent on the pool of its effective
// placement (act): a read-only final snapshot of it, then the delete of its
// subvolume; its snapshots are kept.
func (pp *poolPlanner) absent(sh *schema.Share, act schema.Placement, path string, sv Subvolume, exists bool) {
	p := pp.pool
	nested := pp.nested[sh.Name]
	snapDir := filepath.Join(p.Path, SnapshotDir, sh.Name)
	switch {
	case !exists:
		// Nothing to delete; a plain directory of that name is not a share.
		return
	case len(nested) > 0:
		pp.blocked = append(pp.blocked, Action{
			Kind: ActionBlocked, Pool: p.Name, Share: sh.Name, Path: path, ReportOnly: true,
			Detail: "state: absent, but it holds subvolumes " + strings.Join(nested, ", "),
			Reason: fmt.Sprintf("share %s is marked state: absent but holds nested subvolumes (%s), which fleetctl never deletes; delete or move them first", sh.Name, strings.Join(nested, ", ")),
		})
		return
	}

	detail := "state: absent"
	if sh.Replication != nil {
		detail += fmt.Sprintf(", on %s, active at epoch %d", act.Active.Appliance, act.Epoch)
	}
	finals := pp.finals[sh.Name]
	var final string // the final snapshot the delete comes after
	var earlier int  // final snapshots from earlier deletes (or attempts)
	for i := len(finals) - 1; i >= 0; i-- {
		if f := finals[i]; f.sv.ReadOnly && unchangedSince(sv, f.sv) {
			final = filepath.Join(p.Path, f.sv.Path)
			earlier = len(finals) - 1
			break
		}
	}
	if final != "" {
		detail += ", final snapshot " + filepath.Base(final) + " taken already"
	} else {
		// A new final snapshot, stamped after every earlier one so that
		// two never share a name.
		t := pp.in.Now
		if n := len(finals); n > 0 && !t.After(finals[n-1].time) {
			t = finals[n-1].time.Add(time.Second)
		}
		final = FinalSnapshotPath(p.Path, sh.Name, t)
		earlier = len(finals)
		detail += ", after its final snapshot"
		pp.del = append(pp.del, Action{
			Kind: ActionFinalSnapshot, Pool: p.Name, Share: sh.Name, Path: final, Source: path,
			Detail: "as " + filepath.Join(SnapshotDir, sh.Name, filepath.Base(final)) + ", then delete",
			Reason: fmt.Sprintf("share %s is deleted next (state: absent); first a read-only snapshot of it as it is now is kept in %s, never pruned by retention, so nothing written since its last snapshot is lost; if it fails, the share is not deleted",
				sh.Name, snapDir),
		})
	}

	reason := fmt.Sprintf("the spec marks it state: absent; its final snapshot %s is kept", final)
	if n := len(pp.snaps[sh.Name]); n > 0 {
		reason += fmt.Sprintf("; its %d snapshot%s in %s %s kept", n, plural(n), snapDir, isAre(n))
	}
	if earlier > 0 {
		reason += fmt.Sprintf("; %d earlier final snapshot%s %s kept there too", earlier, plural(earlier), isAre(earlier))
	}
	if sh.Replication != nil {
		reason += fmt.Sprintf("; share %s is active on %s at epoch %d, so this is the copy deleted: %s's copies (its received snapshots, and its own copy of the share if it has one) are kept, as are the replication and received snapshots here",
			sh.Name, act.Active.Appliance, act.Epoch, act.Replica.Appliance)
	}
	pp.del = append(pp.del, Action{
		Kind: ActionDeleteShare, Pool: p.Name, Share: sh.Name, Path: path, Source: final,
		Detail: detail, Reason: reason,
	})
}

// createShare plans a new, empty share.
func (pp *poolPlanner) createShare(sh *schema.Share, path string) {
	snapDir := filepath.Join(pp.pool.Path, SnapshotDir, sh.Name)
	a := Action{
		Kind: ActionCreateShare, Pool: pp.pool.Name, Share: sh.Name, Path: path,
		Reason: fmt.Sprintf("share %s is in the spec but %s does not exist", sh.Name, path),
	}
	if sh.Quota > 0 {
		a.Detail = "quota " + sh.Quota.String()
	}
	if n := len(pp.snaps[sh.Name]); n > 0 {
		a.Reason += fmt.Sprintf("; %d earlier snapshot%s of it %s kept in %s", n, plural(n), isAre(n), snapDir)
	}
	pp.create = append(pp.create, a)
}

// shareQuota plans the quota of a share that exists or is being created.
func (pp *poolPlanner) shareQuota(sh *schema.Share, path string, sv Subvolume, exists bool) {
	want := uint64(sh.Quota)
	var have, used uint64
	if exists && pp.obs.QuotaEnabled {
		qg := pp.obs.Qgroups[sv.ID]
		have, used = qg.MaxReferenced, qg.Referenced
	}
	switch {
	case want > 0 && want != have:
		if !pp.obs.QuotaEnabled {
			pp.needQuota = append(pp.needQuota, sh.Name)
		}
		a := Action{
			Kind: ActionSetQuota, Pool: pp.pool.Name, Share: sh.Name, Path: path,
			Quota: want, OldQuota: have,
			Reason: fmt.Sprintf("the spec gives share %s a quota of %s", sh.Name, sh.Quota),
		}
		if used > want {
			a.Detail = "usage " + quotaText(used) + " is over it"
			a.Reason += fmt.Sprintf("; it already uses %s, so writes will fail until usage drops below the quota", quotaText(used))
		}
		pp.quota = append(pp.quota, a)
	case want == 0 && have > 0:
		pp.quota = append(pp.quota, Action{
			Kind: ActionClearQuota, Pool: pp.pool.Name, Share: sh.Name, Path: path,
			OldQuota: have,
			Reason:   fmt.Sprintf("share %s has a quota of %s on disk but none in the spec", sh.Name, quotaText(have)),
		})
	}
}

// snapshots plans the snapshot a share is due and the pruning its retention
// asks for.
func (pp *poolPlanner) snapshots(sh *schema.Share, path, snapDir string, snaps []snapshotFile) {
	sn := sh.Snapshots
	now := pp.in.Now
	name := sh.Name + "." + pp.stamp

	// One snapshot when due, however many ticks were missed: Next of the
	// newest snapshot is the first tick it does not cover.
	due := len(snaps) == 0
	var next time.Time
	if len(snaps) > 0 {
		newest := snaps[len(snaps)-1]
		next = sn.Schedule.Next(newest.time.In(now.Location()))
		due = !next.IsZero() && !next.After(now) && filepath.Base(newest.rel) != name
	}
	if due {
		// Written only for a snapshot that is due: formatting them for
		// every share at every run was a tenth of a no-op plan.
		detail := sn.Schedule.String() + ", first"
		reason := fmt.Sprintf("share %s has no snapshot yet", sh.Name)
		if len(snaps) > 0 {
			newest := snaps[len(snaps)-1]
			detail = sn.Schedule.String() + ", last " + ago(now.Sub(newest.time))
			reason = fmt.Sprintf("schedule %q was due at %s; the newest snapshot is from %s", sn.Schedule, next.UTC().Format(time.RFC3339), newest.time.UTC().Format(time.RFC3339))
		}
		pp.meta = append(pp.meta, Action{
			Kind: ActionMakeMetaDir, Pool: pp.pool.Name, Share: sh.Name, Path: snapDir,
			Reason: "snapshots of " + sh.Name + " live there; made if missing",
		})
		pp.snap = append(pp.snap, Action{
			Kind: ActionSnapshot, Pool: pp.pool.Name, Share: sh.Name, Path: snapDir + "/" + name, Source: path,
			Detail: detail, Reason: reason,
		})
	}

	// Retention counts the snapshot about to be taken, as btrbk schedules
	// after creating it, so the next plan agrees with this one.
	times := make([]time.Time, 0, len(snaps)+1)
	for _, s := range snaps {
		times = append(times, s.time)
	}
	if due {
		times = append(times, now)
	}
	keepMin := max(sn.KeepMin, schema.DefaultKeepMin)
	keep := Keep(times, sn.Retention, keepMin, now)
	for i, s := range snaps {
		// A writable snapshot was changed by hand; its data is kept.
		if keep[i] || !s.readOnly {
			continue
		}
		abs := filepath.Join(pp.pool.Path, s.rel)
		if pp.in.Protected[abs] {
			continue
		}
		pp.prune = append(pp.prune, Action{
			Kind: ActionPruneSnapshot, Pool: pp.pool.Name, Share: sh.Name, Path: abs,
			Detail: "retention " + sn.Retention.String(),
			Reason: fmt.Sprintf("retention %q with keep_min %d no longer keeps it", sn.Retention, keepMin),
		})
	}
}

// parseSnapshotName returns the time in a snapshot name "<share>.<stamp>",
// the stamp in StampFormat exactly (20261125T084600Z).
func parseSnapshotName(share, name string) (time.Time, bool) {
	stamp, ok := strings.CutPrefix(name, share+".")
	if !ok {
		return time.Time{}, false
	}
	return parseStamp(stamp)
}

// finalSnap is a share's final snapshot found on disk.
type finalSnap struct {
	sv   Subvolume
	time time.Time
}

// FinalSnapshotPath is the absolute path of the share's final snapshot
// taken at t, right before the share was deleted:
// <pool>/.fleetctl/snapshots/<share>/<share>.final.<stamp>. It lies with the
// share's snapshots, but retention never prunes it: retention counts only
// the names <share>.<stamp>.
func FinalSnapshotPath(pool, share string, t time.Time) string {
	return filepath.Join(pool, SnapshotDir, share, share+finalInfix+t.UTC().Format(StampFormat))
}

// finalInfix is what sets a final snapshot's name apart from a scheduled
// snapshot's: <share>.final.<stamp>.
const finalInfix = ".final."

// parseFinalName returns the time in a final snapshot's name
// "<share>.final.<stamp>".
func parseFinalName(share, name string) (time.Time, bool) {
	stamp, ok := strings.CutPrefix(name, share+finalInfix)
	if !ok {
		return time.Time{}, false
	}
	return parseStamp(stamp)
}

// SnapshotPath is the absolute path of the share's snapshot taken at t.
func SnapshotPath(pool, share string, t time.Time) string {
	return filepath.Join(pool, SnapshotDir, share, share+"."+t.UTC().Format(StampFormat))
}

// ago says how long ago something was, the way a person would: 45s ago,
// 12m ago, 5h ago, 3d ago.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
