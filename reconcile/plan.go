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
	ActionSetQuota      ActionKind = "set-quota"      // set a share's qgroup limit
	ActionClearQuota    ActionKind = "clear-quota"    // remove a share's qgroup limit
	ActionMakeMetaDir   ActionKind = "make-meta-dir"  // make a directory under .fleetctl (idempotent)
	ActionSnapshot      ActionKind = "snapshot"       // take a read-only snapshot of a share
	ActionPruneSnapshot ActionKind = "prune-snapshot" // delete a snapshot retention no longer keeps
	ActionDeleteShare   ActionKind = "delete-share"   // delete a share marked state: absent
	ActionBlocked       ActionKind = "blocked"        // report: the spec cannot be met without a person
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
	// snapshot, the subvolume otherwise.
	Path string `json:"path,omitempty"`
	// Source is the subvolume a snapshot action snapshots.
	Source string `json:"source,omitempty"`
	// Quota and OldQuota are the limit in bytes after and before a quota
	// action; 0 is none.
	Quota    uint64 `json:"quota,omitempty"`
	OldQuota uint64 `json:"old_quota,omitempty"`
	// Detail is the short note shown in parentheses on the diff line.
	Detail string `json:"detail,omitempty"`
	// Reason says in one sentence why the action is planned.
	Reason string `json:"reason"`
	// ReportOnly actions (orphaned, pool-error, blocked) are shown and never
	// executed.
	ReportOnly bool `json:"report_only,omitempty"`
}

// Symbol is the diff symbol of the action: + adds, ~ changes, - destroys,
// ! reports.
func (a Action) Symbol() string {
	switch a.Kind {
	case ActionCreateShare, ActionMakeMetaDir, ActionSnapshot:
		return "+"
	case ActionSetQuota, ActionClearQuota, ActionEnableQuota:
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
	case ActionSetQuota, ActionClearQuota:
		head = "quota " + a.Share + " " + quotaText(a.OldQuota) + " → " + quotaText(a.Quota)
	case ActionMakeMetaDir:
		head = "directory " + SnapshotDir + "/" + a.Share + " on pool " + a.Pool
	case ActionSnapshot:
		head = "snapshot " + a.Share
	case ActionPruneSnapshot:
		head = "prune snapshot " + filepath.Base(a.Path)
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
}

// Plan decides what to do to make the appliance's pools match the spec. It
// is pure: the same input gives the same actions, in the same order.
//
// Per pool, in spec order: enable-quota, create-share, set/clear-quota,
// make-meta-dir, snapshot, prune-snapshot, delete-share, then the report-only
// actions (blocked, orphaned); shares in spec order. A pool that could not be
// observed gets one pool-error action and nothing else.
//
// Nothing is ever deleted but a share marked state: absent and snapshots
// that retention no longer keeps; a subvolume no share names is reported as
// orphaned and kept.
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

	top    map[string]Subvolume      // subvolumes directly in the pool, by name
	nested map[string][]string       // name → subvolumes below that name
	snaps  map[string][]snapshotFile // share → its snapshots, oldest first

	needQuota []string // shares whose quota needs quotas enabled

	enable, create, quota, meta, snap, prune, del, blocked, orphaned []Action
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
		stamp:  in.Now.UTC().Format(StampFormat),
		top:    map[string]Subvolume{},
		nested: map[string][]string{},
		snaps:  map[string][]snapshotFile{},
	}
	snapPrefix := SnapshotDir + "/"
	for _, sv := range obs.Subvolumes {
		if rest, ok := strings.CutPrefix(sv.Path, snapPrefix); ok {
			share, name, ok := strings.Cut(rest, "/")
			if !ok || strings.Contains(name, "/") {
				continue
			}
			if t, ok := parseSnapshotName(share, name); ok {
				pp.snaps[share] = append(pp.snaps[share], snapshotFile{sv.Path, t, sv.ReadOnly})
			}
			continue
		}
		top, _, isNested := strings.Cut(sv.Path, "/")
		switch {
		case !isNested:
			pp.top[sv.Path] = sv
		case top != MetaDir:
			pp.nested[top] = append(pp.nested[top], sv.Path)
		}
	}
	for _, s := range pp.snaps {
		slices.SortFunc(s, func(a, b snapshotFile) int { return a.time.Compare(b.time) })
	}

	named := map[string]bool{}
	for i := range in.Spec.Shares {
		sh := &in.Spec.Shares[i]
		if sh.Appliance != in.Appliance || sh.Pool != p.Name {
			continue
		}
		named[sh.Name] = true
		pp.share(sh)
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
			Reason: "not in the spec: kept on disk; to delete it, add it as a share with state: absent",
		})
	}

	return slices.Concat(pp.enable, pp.create, pp.quota, pp.meta, pp.snap, pp.prune, pp.del, pp.blocked, pp.orphaned)
}

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

// share plans one share of the pool.
func (pp *poolPlanner) share(sh *schema.Share) {
	p := pp.pool
	path := filepath.Join(p.Path, sh.Name)
	sv, exists := pp.top[sh.Name]
	nested := pp.nested[sh.Name]
	snaps := pp.snaps[sh.Name]
	snapDir := filepath.Join(p.Path, SnapshotDir, sh.Name)

	if sh.State == schema.StateAbsent {
		switch {
		case !exists:
			// Nothing to delete; a plain directory of that name is not a share.
		case len(nested) > 0:
			pp.blocked = append(pp.blocked, Action{
				Kind: ActionBlocked, Pool: p.Name, Share: sh.Name, Path: path, ReportOnly: true,
				Detail: "state: absent, but it holds subvolumes " + strings.Join(nested, ", "),
				Reason: fmt.Sprintf("share %s is marked state: absent but holds nested subvolumes (%s), which fleetctl never deletes; delete or move them first", sh.Name, strings.Join(nested, ", ")),
			})
		default:
			reason := "the spec marks it state: absent"
			if n := len(snaps); n > 0 {
				reason += fmt.Sprintf("; its %d snapshot%s in %s %s kept", n, plural(n), snapDir, isAre(n))
			}
			pp.del = append(pp.del, Action{
				Kind: ActionDeleteShare, Pool: p.Name, Share: sh.Name, Path: path,
				Detail: "state: absent", Reason: reason,
			})
		}
		return
	}

	if !exists {
		if len(nested) > 0 {
			// A plain directory with subvolumes in it sits where the share
			// belongs; creating would fail, and only a person can sort it out.
			pp.blocked = append(pp.blocked, Action{
				Kind: ActionBlocked, Pool: p.Name, Share: sh.Name, Path: path, ReportOnly: true,
				Detail: "a directory holding subvolumes is in the way",
				Reason: fmt.Sprintf("%s is a plain directory holding subvolumes (%s), not a subvolume; move it away so the share can be created", path, strings.Join(nested, ", ")),
			})
			return
		}
		a := Action{
			Kind: ActionCreateShare, Pool: p.Name, Share: sh.Name, Path: path,
			Reason: fmt.Sprintf("share %s is in the spec but %s does not exist", sh.Name, path),
		}
		if sh.Quota > 0 {
			a.Detail = "quota " + sh.Quota.String()
		}
		if n := len(snaps); n > 0 {
			a.Reason += fmt.Sprintf("; %d earlier snapshot%s of it %s kept in %s", n, plural(n), isAre(n), snapDir)
		}
		pp.create = append(pp.create, a)
	}

	pp.shareQuota(sh, path, sv, exists)
	if sh.Snapshots != nil {
		pp.snapshots(sh, path, snapDir, snaps)
	}
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
	detail := sn.Schedule.String()
	reason := fmt.Sprintf("share %s has no snapshot yet", sh.Name)
	if len(snaps) > 0 {
		newest := snaps[len(snaps)-1]
		next := sn.Schedule.Next(newest.time.In(now.Location()))
		due = !next.IsZero() && !next.After(now) && filepath.Base(newest.rel) != name
		detail += ", last " + ago(now.Sub(newest.time))
		reason = fmt.Sprintf("schedule %q was due at %s; the newest snapshot is from %s", sn.Schedule, next.UTC().Format(time.RFC3339), newest.time.UTC().Format(time.RFC3339))
	} else {
		detail += ", first"
	}
	if due {
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
	if !ok || len(stamp) != len(StampFormat) || stamp[8] != 'T' || stamp[15] != 'Z' {
		return time.Time{}, false
	}
	var f [6]int // year, month, day, hour, minute, second
	for i, span := range [6][2]int{{0, 4}, {4, 6}, {6, 8}, {9, 11}, {11, 13}, {13, 15}} {
		for _, c := range []byte(stamp[span[0]:span[1]]) {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			f[i] = f[i]*10 + int(c-'0')
		}
	}
	t := time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], 0, time.UTC)
	// time.Date normalizes: month 13 or 30 February would come back changed.
	if t.Year() != f[0] || int(t.Month()) != f[1] || t.Day() != f[2] || t.Hour() != f[3] || t.Minute() != f[4] || t.Second() != f[5] {
		return time.Time{}, false
	}
	return t, true
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
