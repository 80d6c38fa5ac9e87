package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// Report is what one reconcile run found and did on this appliance, as the
// agent publishes it to the fleet. It holds no timestamps, so two runs that
// found the same state give equal Reports and an idle fleet writes nothing.
type Report struct {
	// Generation is the spec generation the run reconciled toward.
	Generation uint64 `json:"generation"`
	// Converged is true when the run left nothing to do but report.
	Converged bool `json:"converged"`
	// Errors are the failed actions and unobservable pools, one sentence each.
	Errors []string `json:"errors,omitempty"`
	// Shares are the facts of this appliance's shares, in spec order.
	Shares []ShareFacts `json:"shares,omitempty"`
	// Orphans are subvolumes at the top of a pool that no share names,
	// as pool/name: kept on disk, reported.
	Orphans []string `json:"orphans,omitempty"`
	// OrphanFacts are the size and creation time of each orphan, in the
	// order of Orphans. The creation time is the subvolume's, not the
	// run's, so it keeps equal runs equal.
	OrphanFacts []OrphanFacts `json:"orphan_facts,omitempty"`
}

// OrphanFacts is what the appliance knows of one orphaned subvolume.
type OrphanFacts struct {
	Pool string `json:"pool"`
	Name string `json:"name"`
	// Referenced is the bytes the subvolume refers to; nil when unknown
	// (quotas are off on the pool, or it has no qgroup).
	Referenced *uint64 `json:"referenced,omitempty"`
	// Created is when the subvolume was created (UTC); zero when unknown.
	Created time.Time `json:"created,omitzero"`
}

// ShareFacts is what the appliance knows of one of its shares: those it is
// active for, at their effective placement, and its demoted copies.
type ShareFacts struct {
	Name string `json:"name"`
	Pool string `json:"pool"`
	// Exists is whether the share's subvolume is on disk.
	Exists bool `json:"exists"`
	// Referenced is the bytes the share refers to (0 when quotas are off).
	Referenced uint64 `json:"referenced"`
	// Quota is the qgroup limit on disk; 0 for none.
	Quota uint64 `json:"quota"`
	// Snapshots counts the share's snapshots on this appliance.
	Snapshots int `json:"snapshots"`
	// Demoted says another appliance is active for the share: this is the
	// copy it left, kept as it is.
	Demoted bool `json:"demoted,omitempty"`
	// Diverged counts the diverged snapshots kept of the share here: its
	// writes after its last replication snapshot, from a time this
	// appliance was active.
	Diverged int `json:"diverged,omitempty"`
}

// Loop keeps one appliance's btrfs state at the spec: it reconciles on every
// spec change and every Interval (so drift, like a share deleted by hand, is
// repaired), and publishes a Report when it differs from the last one
// published.
type Loop struct {
	// Appliance is this appliance's name in the spec.
	Appliance string
	// Driver speaks to btrfs.
	Driver Driver
	// Watch returns the current spec (nil before the first apply, or when
	// this agent cannot read it), its generation, and a channel closed when
	// either changes.
	Watch func() (spec *schema.Spec, generation uint64, changed <-chan struct{})
	// Active returns the activation of every replicated share that failed
	// over, by share (see PlanInput.Active); nil, or a share missing, means
	// as the spec says. A change runs the loop at once.
	Active func() map[string]schema.Activation
	// Publish sends a Report to the fleet; a failure is retried at the next
	// run.
	Publish func(ctx context.Context, r Report) error
	// Interval is the time between runs when nothing changes.
	Interval time.Duration
	// Ran, when set, is told of every run Run makes: its report and how
	// long it took (the agent's metrics count them). It must not block.
	Ran func(r Report, took time.Duration)
	// Log receives what the loop does.
	Log *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	// mu is held for a whole run, and by Hold.
	mu        sync.Mutex
	published *Report
	// created caches the creation times of orphans by UUID (a subvolume
	// never changes it), so each is asked of btrfs once.
	created map[string]time.Time
}

// Run reconciles until ctx ends: at once, whenever the spec's generation
// or a share's activation changes, and every Interval.
func (l *Loop) Run(ctx context.Context) {
	var (
		ran       uint64                       // the generation of the last run
		ranActive map[string]schema.Activation // the activations of the last run
		next      time.Time                    // when the next periodic run is due
	)
	for {
		spec, gen, changed := l.Watch()
		active := l.active()
		wait := l.Interval
		if spec != nil {
			if gen != ran || !maps.Equal(active, ranActive) || !time.Now().Before(next) {
				start := time.Now()
				rep, _ := l.once(ctx, spec, gen, active)
				if l.Ran != nil {
					l.Ran(rep, time.Since(start))
				}
				l.publish(ctx, rep)
				ran, ranActive, next = gen, active, time.Now().Add(l.Interval)
			}
			wait = time.Until(next)
		}
		// Other changes to the replicated state (another appliance's
		// report) wake the loop too; it runs again only for a new spec
		// or a failover.
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(wait):
		}
	}
}

func (l *Loop) publish(ctx context.Context, rep Report) {
	if l.published != nil && reflect.DeepEqual(*l.published, rep) {
		return
	}
	if err := l.Publish(ctx, rep); err != nil {
		l.Log.Warn("could not publish this appliance's status; will retry", "err", err)
		return
	}
	l.published = &rep
}

func (l *Loop) active() map[string]schema.Activation {
	if l.Active == nil {
		return nil
	}
	return l.Active()
}

// Once observes, plans and executes one reconcile run toward spec, with
// the activations Active returns now, and reports what it found and did.
func (l *Loop) Once(ctx context.Context, spec *schema.Spec, generation uint64) (Report, []Result) {
	return l.once(ctx, spec, generation, l.active())
}

// Hold waits for a run in progress to end and keeps the next from
// starting until release is called: for a change to a share that the
// reconciler must not see half done (an in-place restore renames the share
// away for a moment, and a run then would make a new empty one).
func (l *Loop) Hold() (release func()) {
	l.mu.Lock()
	return l.mu.Unlock
}

func (l *Loop) once(ctx context.Context, spec *schema.Spec, generation uint64, active map[string]schema.Activation) (Report, []Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	obs := Observe(ctx, l.Driver, spec, l.Appliance)
	actions := Plan(PlanInput{Spec: spec, Appliance: l.Appliance, Observed: obs, Now: now(), Active: active})
	results := Execute(ctx, l.Driver, actions)
	rep := Report{Generation: generation, Converged: true}
	for _, a := range actions {
		switch a.Kind {
		case ActionPoolError, ActionBlocked:
			rep.Converged = false
			rep.Errors = append(rep.Errors, a.String()+": "+a.Reason)
		case ActionOrphaned:
			rep.Orphans = append(rep.Orphans, a.Pool+"/"+a.Share)
		}
	}
	for _, r := range results {
		if r.Err != nil {
			rep.Converged = false
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", r.Action, r.Err))
			l.Log.Error("reconcile action failed", "action", r.Action.String(), "err", r.Err)
		} else {
			l.Log.Info("reconciled", "action", r.Action.String(), "reason", r.Action.Reason)
		}
	}
	// The facts are read after the run, so they say what is on disk now.
	if len(results) > 0 {
		obs = Observe(ctx, l.Driver, spec, l.Appliance)
	}
	rep.Shares = shareFacts(spec, l.Appliance, obs, active)
	rep.OrphanFacts = l.orphanFacts(ctx, actions, obs)
	return rep, results
}

// orphanFacts collects the size (referenced bytes, when the pool has
// quotas) and creation time of each orphan the plan reported.
func (l *Loop) orphanFacts(ctx context.Context, actions []Action, obs Observed) []OrphanFacts {
	var out []OrphanFacts
	seen := map[string]bool{}
	for _, a := range actions {
		if a.Kind != ActionOrphaned {
			continue
		}
		f := OrphanFacts{Pool: a.Pool, Name: a.Share}
		po := obs.Pools[a.Pool]
		for _, sv := range po.Subvolumes {
			if sv.Path != a.Share {
				continue
			}
			if q, ok := po.Qgroups[sv.ID]; ok && po.QuotaEnabled {
				f.Referenced = &q.Referenced
			}
			seen[sv.UUID] = true
			if t, ok := l.created[sv.UUID]; ok && sv.UUID != "" {
				f.Created = t
				break
			}
			t, err := l.Driver.Created(ctx, a.Path)
			if err != nil {
				l.Log.Warn("could not read when an orphaned subvolume was created", "path", a.Path, "err", err)
				break
			}
			if l.created == nil {
				l.created = map[string]time.Time{}
			}
			if sv.UUID != "" {
				l.created[sv.UUID] = t
			}
			f.Created = t
			break
		}
		out = append(out, f)
	}
	for uuid := range l.created {
		if !seen[uuid] {
			delete(l.created, uuid) // adopted, deleted or renamed: asked again if it comes back
		}
	}
	return out
}

// shareFacts collects the facts of the appliance's shares from an
// observation: the shares it is active for, at their effective placement,
// and the demoted copies it holds.
func shareFacts(spec *schema.Spec, appliance string, obs Observed, active map[string]schema.Activation) []ShareFacts {
	var out []ShareFacts
	for i := range spec.Shares {
		sh := &spec.Shares[i]
		pool := SharePool(spec, sh, appliance)
		if pool == nil {
			continue
		}
		act, _ := sh.Place(active[sh.Name])
		f := ShareFacts{Name: sh.Name, Pool: pool.Name, Demoted: act.Active.Appliance != appliance}
		po, ok := obs.Pools[pool.Name]
		if !ok || po.Err != "" {
			if appliance == sh.Appliance || !f.Demoted {
				out = append(out, f)
			}
			continue
		}
		prefix := SnapshotDir + "/" + sh.Name + "/"
		for _, sv := range po.Subvolumes {
			switch {
			case sv.Path == sh.Name:
				f.Exists = true
				q := po.Qgroups[sv.ID]
				f.Referenced, f.Quota = q.Referenced, q.MaxReferenced
			case strings.HasPrefix(sv.Path, prefix) && path.Dir(sv.Path) == path.Clean(prefix):
				f.Snapshots++
			case path.Dir(sv.Path) == DivergedDir:
				if s, ok := divergedShare(path.Base(sv.Path)); ok && s == sh.Name {
					f.Diverged++
				}
			}
		}
		// The replica of a share that never failed over holds no copy of
		// its own; the received snapshots are the replication's business.
		if f.Demoted && appliance != sh.Appliance && (act.Epoch == 0 || !f.Exists) {
			continue
		}
		out = append(out, f)
	}
	return out
}
