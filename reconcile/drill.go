package reconcile

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// A disaster-recovery drill proves, on the replica, that the newest
// received snapshot of a share can become a writable copy, and measures
// how long that takes and how old its data is:
//
//  1. the newest complete received snapshot is cloned with a writable
//     btrfs snapshot into <pool>/.fleetctl/drill/<share>.<stamp> (the
//     received snapshot, the share and everything else are left alone);
//  2. an optional check command runs in the clone;
//  3. the clone is removed, whatever the check did; a clone a crash left
//     behind is removed at the agent's next start (CleanDrills) or by the
//     share's next drill;
//  4. the drill is recorded in the share's trail (Side SideDrill) with its
//     RPO (the drill's start minus the received snapshot's stamp: how old
//     the newest replicated data is) and RTO (the drill's start to the
//     writable clone).

// DrillDir is where drills clone received snapshots, relative to the pool.
const DrillDir = MetaDir + "/drill"

// SideDrill is the trail side of a drill, recorded by the replica.
const SideDrill = "drill"

// Drill limits.
const (
	// DefaultCheckTimeout bounds a check command when the request names
	// no timeout; MaxCheckTimeout bounds any.
	DefaultCheckTimeout = 10 * time.Minute
	MaxCheckTimeout     = time.Hour
	// MaxCheckLen bounds the check command (it is recorded in the trail).
	MaxCheckLen = 4096
	// MaxCheckOutput is how much of a check's output (stdout and stderr
	// together) is kept: the last MaxCheckOutput bytes.
	MaxCheckOutput = 64 << 10
)

// Environment variables a check command gets besides the agent's own.
const (
	EnvDrillDir      = "FLEETCTL_DRILL_DIR"      // the clone's absolute path (also the working directory)
	EnvDrillShare    = "FLEETCTL_DRILL_SHARE"    // the share
	EnvDrillSnapshot = "FLEETCTL_DRILL_SNAPSHOT" // the stamp of the received snapshot cloned
)

// ErrNothingReceived means a drill found no complete received snapshot of
// the share on this appliance: there is nothing to recover from yet.
var ErrNothingReceived = errors.New("nothing has been received yet")

// ErrDrilling means a drill of the share is already going here.
var ErrDrilling = errors.New("a drill of this share is already going")

// DrillRequest is what a drill is asked to do.
type DrillRequest struct {
	// Check is a shell command (run with /bin/sh -c) to run in the clone;
	// "" runs none.
	Check string
	// Timeout bounds Check; 0 means DefaultCheckTimeout.
	Timeout time.Duration
	// Start is when the drill was asked for (the RTO counts from it);
	// the zero time means when Drill starts.
	Start time.Time
}

// Validate checks the request's bounds.
func (q DrillRequest) Validate() error {
	switch {
	case len(q.Check) > MaxCheckLen:
		return fmt.Errorf("the check command is %d bytes; at most %d", len(q.Check), MaxCheckLen)
	case strings.ContainsRune(q.Check, 0):
		return errors.New("the check command holds a NUL byte")
	case q.Timeout < 0 || q.Timeout > MaxCheckTimeout:
		return fmt.Errorf("the check timeout %s is not between 0 and %s", q.Timeout, MaxCheckTimeout)
	}
	return nil
}

// DrillResult is what a drill did.
type DrillResult struct {
	// Entry is the drill's trail entry (also given to Trail).
	Entry TrailEntry `json:"entry"`
	// Clone is where the clone was, relative to the pool; "" when none
	// was made.
	Clone string `json:"clone,omitempty"`
	// Removed says the clone is gone again.
	Removed bool `json:"removed"`
	// Output is the check's output, stdout and stderr together: the last
	// MaxCheckOutput bytes, Truncated when there was more.
	Output    string `json:"output,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// CheckErr says how the check failed ("" when it passed or none ran).
	CheckErr string `json:"check_error,omitempty"`
}

// CheckFunc runs a drill's check command in dir with env added to the
// agent's environment, stopping it when ctx ends; it returns the
// command's output and how it failed.
type CheckFunc func(ctx context.Context, dir string, env []string, command string) (output []byte, truncated bool, err error)

// DrillClonePath is the absolute path of a drill's clone of share made at
// t: <pool>/.fleetctl/drill/<share>.<stamp>.
func DrillClonePath(pool, share string, t time.Time) string {
	return filepath.Join(pool, DrillDir, share+"."+t.UTC().Format(StampFormat))
}

// drillCloneShare returns the share a name in DrillDir is a clone of:
// <share>.<stamp>.
func drillCloneShare(name string) (string, bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", false
	}
	if _, ok := parseStamp(name[i+1:]); !ok {
		return "", false
	}
	return name[:i], true
}

// drillLeftovers are the subvolumes under DrillDir of a pool's that a
// drill of a share for which keep says false left behind, deepest first
// (a check may have made subvolumes inside its clone). Anything directly
// in DrillDir that is not named like a clone belongs to no drill and is
// left alone.
func drillLeftovers(subs []Subvolume, keep func(share string) bool) []Subvolume {
	prefix := DrillDir + "/"
	var out []Subvolume
	for _, sv := range subs {
		rest, ok := strings.CutPrefix(sv.Path, prefix)
		if !ok {
			continue
		}
		top, _, _ := strings.Cut(rest, "/")
		share, ok := drillCloneShare(top)
		if !ok || keep(share) {
			continue
		}
		out = append(out, sv)
	}
	slices.SortStableFunc(out, func(a, b Subvolume) int { return strings.Count(b.Path, "/") - strings.Count(a.Path, "/") })
	return out
}

// drillRPO is how old the newest replicated data was at the drill's
// start: the start minus the received snapshot's stamp (the time the
// source took it), never below zero (clocks differ).
func drillRPO(start, stamp time.Time) time.Duration {
	return max(start.Sub(stamp), 0)
}

// claimDrill marks a drill of share going, unless one is.
func (rv *Receiver) claimDrill(share string) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.drills[share] {
		return false
	}
	if rv.drills == nil {
		rv.drills = map[string]bool{}
	}
	rv.drills[share] = true
	return true
}

func (rv *Receiver) releaseDrill(share string) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	delete(rv.drills, share)
}

func (rv *Receiver) drilling(share string) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.drills[share]
}

// Drill runs a disaster-recovery drill of share on this appliance, its
// replica (see the comment at DrillDir). It fails without changing
// anything or recording anything when this appliance is not the share's
// replica (ErrRefused), the share is absent, a drill of it is going
// (ErrDrilling), or it holds no complete received snapshot
// (ErrNothingReceived). Otherwise it records the drill in the trail and
// returns it: Entry.Result is ResultOK when the clone was made, the check
// (if any) passed and the clone was removed, else ResultFailed with Error
// saying why.
func (rv *Receiver) Drill(ctx context.Context, spec *schema.Spec, share string, q DrillRequest) (res DrillResult, err error) {
	if err = q.Validate(); err != nil {
		return res, err
	}
	start := q.Start
	if start.IsZero() {
		start = rv.now()
	}
	sh, act, pool, err := rv.target(spec, share)
	if err != nil {
		return res, fmt.Errorf("drill of %s: %w", share, err)
	}
	if sh.State == schema.StateAbsent {
		return res, fmt.Errorf("drill of %s: %w: the share is marked state: absent", share, ErrRefused)
	}
	if !rv.claimDrill(share) {
		return res, fmt.Errorf("drill of %s: %w", share, ErrDrilling)
	}
	defer rv.releaseDrill(share)
	if err := rv.checkPool(ctx, pool); err != nil {
		return res, fmt.Errorf("drill of %s: %w", share, err)
	}
	subs, err := rv.Driver.Subvolumes(ctx, pool)
	if err != nil {
		return res, fmt.Errorf("drill of %s: %w", share, err)
	}
	src := newestComplete(subs, share)
	if src == nil {
		return res, fmt.Errorf("drill of %s: %w on %s (no complete snapshot in %s)", share, ErrNothingReceived, rv.Appliance, filepath.Join(pool, ReceivedDir, share))
	}

	e := TrailEntry{
		ID: rand.Text(), Share: share, Side: SideDrill, From: act.Active.Appliance, To: rv.Appliance,
		Start: start, Snapshot: src.time.UTC().Format(StampFormat), Check: q.Check,
		RPO: drillRPO(start, src.time),
	}
	defer func() {
		e.End = rv.now()
		res.Entry = e
		rv.record(ctx, e)
	}()
	fail := func(err error) {
		e.Result = ResultFailed
		if e.Error != "" {
			e.Error += "; "
		}
		e.Error += err.Error()
	}

	// A clone an earlier drill of this share left (the agent died during
	// it) goes first.
	if err := rv.removeDrillClones(ctx, pool, subs, func(s string) bool { return s != share }); err != nil {
		fail(fmt.Errorf("remove a clone an earlier drill left: %w", err))
		return res, nil
	}
	if err := rv.Driver.MkdirAll(ctx, filepath.Join(pool, DrillDir)); err != nil {
		fail(err)
		return res, nil
	}
	clone := DrillClonePath(pool, share, rv.now())
	res.Clone, _ = filepath.Rel(pool, clone)
	e.Note = "clone " + res.Clone
	err = rv.Driver.Snapshot(ctx, filepath.Join(pool, src.sv.Path), clone, false)
	if err != nil {
		// A receive may have pruned the snapshot between the listing and
		// the clone: once more with the newest one now.
		if subs, lerr := rv.Driver.Subvolumes(ctx, pool); lerr == nil {
			if now := newestComplete(subs, share); now != nil && now.sv.Path != src.sv.Path {
				src = now
				e.Snapshot, e.RPO = src.time.UTC().Format(StampFormat), drillRPO(start, src.time)
				err = rv.Driver.Snapshot(ctx, filepath.Join(pool, src.sv.Path), clone, false)
			}
		}
	}
	if err != nil {
		res.Clone, e.Note = "", ""
		fail(fmt.Errorf("clone %s: %w", src.name, err))
		return res, nil
	}
	e.RTO = max(rv.now().Sub(start), time.Nanosecond) // measured, however fast
	rv.log().Info("drill: cloned the newest received snapshot", "share", share, "snapshot", src.name, "clone", clone, "rpo", e.RPO, "rto", e.RTO)

	if q.Check != "" {
		timeout := q.Timeout
		if timeout == 0 {
			timeout = DefaultCheckTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		env := []string{EnvDrillDir + "=" + clone, EnvDrillShare + "=" + share, EnvDrillSnapshot + "=" + e.Snapshot}
		check := rv.Check
		if check == nil {
			check = ExecCheck
		}
		out, truncated, cerr := check(cctx, clone, env, q.Check)
		cancel()
		res.Output, res.Truncated = string(out), truncated
		switch {
		case cerr != nil && errors.Is(cctx.Err(), context.DeadlineExceeded):
			res.CheckErr = fmt.Sprintf("check timed out after %s", timeout)
		case cerr != nil:
			res.CheckErr = "check failed: " + cerr.Error()
		}
		if res.CheckErr != "" {
			fail(errors.New(res.CheckErr))
		}
	}

	// Always removed, also when the check failed or the request was
	// cancelled.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if subs, err := rv.Driver.Subvolumes(rctx, pool); err != nil {
		fail(fmt.Errorf("remove the clone: %w", err))
	} else if err := rv.removeDrillClones(rctx, pool, subs, func(s string) bool { return s != share }); err != nil {
		fail(fmt.Errorf("remove the clone (it is removed at the next drill or agent start): %w", err))
	} else {
		res.Removed = true
	}
	if e.Result == "" {
		e.Result = ResultOK
	}
	return res, nil
}

// newestComplete is the share's newest complete received snapshot among a
// pool's subvolumes, or nil.
func newestComplete(subs []Subvolume, share string) *receivedSnap {
	var newest *receivedSnap
	for _, s := range receivedSnapshots(subs, share) {
		if s.complete() {
			newest = &s
		}
	}
	return newest
}

// removeDrillClones deletes the drill clones among subs of every share
// keep says false for, deepest first.
func (rv *Receiver) removeDrillClones(ctx context.Context, pool string, subs []Subvolume, keep func(string) bool) error {
	var errs []error
	for _, sv := range drillLeftovers(subs, keep) {
		path := filepath.Join(pool, sv.Path)
		rv.log().Info("drill: removing a clone", "path", path)
		if err := rv.Driver.DeleteSubvolume(ctx, path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CleanDrills removes the drill clones a crash left in this appliance's
// pools (as the spec names them), except those of drills going now. The
// agent calls it at start.
func (rv *Receiver) CleanDrills(ctx context.Context, spec *schema.Spec) error {
	if spec == nil {
		return nil
	}
	a := spec.Appliance(rv.Appliance)
	if a == nil {
		return nil
	}
	var errs []error
	for _, p := range a.Pools {
		if ok, err := rv.Driver.IsBtrfs(ctx, p.Path); err != nil || !ok {
			continue // the reconciler reports the pool
		}
		subs, err := rv.Driver.Subvolumes(ctx, p.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := rv.removeDrillClones(ctx, p.Path, subs, rv.drilling); err != nil {
			errs = append(errs, fmt.Errorf("remove drill clones in pool %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ExecCheck is the CheckFunc of the agent: /bin/sh -c command in dir, its
// standard input empty, stdout and stderr captured together (the last
// MaxCheckOutput bytes). When ctx ends, its whole process group is
// killed.
func ExecCheck(ctx context.Context, dir string, env []string, command string) ([]byte, bool, error) {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out := &tailBuffer{max: MaxCheckOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second // a child that keeps the output open
	if err := cmd.Start(); err != nil {
		return nil, false, err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	// Whatever the command left running in its group goes with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	b, truncated := out.bytes()
	return b, truncated, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if n > t.max {
		p, t.truncated = p[n-t.max:], true
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
	return n, nil
}

func (t *tailBuffer) bytes() ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf), t.truncated
}
