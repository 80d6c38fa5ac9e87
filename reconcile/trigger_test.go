package reconcile_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/reconciletest"
	"github.com/fleetctl/fleetctl/schema"
)

// The trigger queue, on the fake driver: every attempt stops in Held until
// the test lets it go, so the test decides exactly when each run ends.

// gateTransport holds every Held call until the test releases it, then
// fails it: an attempt is one Held call that the test can see begin and
// end. Send is never reached.
type gateTransport struct {
	entered chan struct{} // receives when an attempt reaches Held
	release chan struct{} // a send lets one held attempt fail
}

func newGateTransport() *gateTransport {
	return &gateTransport{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateTransport) Held(ctx context.Context, target, share string) ([]reconcile.Subvolume, error) {
	select {
	case g.entered <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-g.release:
		return nil, errors.New("target unreachable (held by the test)")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gateTransport) Send(ctx context.Context, target string, h reconcile.SendHeader, stream io.Reader) (reconcile.ReceiveResult, error) {
	return reconcile.ReceiveResult{}, errors.New("gateTransport sends nothing")
}

// waitEntered waits for the next attempt to reach Held.
func (g *gateTransport) waitEntered(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("no attempt started: %s", what)
	}
}

// letGo lets the attempt held in Held fail.
func (g *gateTransport) letGo(t *testing.T) {
	t.Helper()
	select {
	case g.release <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("no attempt was held to let go")
	}
}

// triggerFleet is a Replicator on nas1 (fake driver) whose share projects
// replicates hourly to nas2, running under Run until the test ends.
type triggerFleet struct {
	rp    *reconcile.Replicator
	gate  *gateTransport
	trail *trailLog
	spec  *schema.Spec
	stop  context.CancelFunc
	done  chan struct{}
}

func newTriggerFleet(t *testing.T) *triggerFleet {
	t.Helper()
	d := reconciletest.NewFakeDriver()
	d.AddPool("/srv/nas1/tank")
	d.AddPool("/srv/nas2/backup")
	if err := d.CreateSubvolume(t.Context(), "/srv/nas1/tank/projects"); err != nil {
		t.Fatal(err)
	}
	fl := &triggerFleet{
		gate:  newGateTransport(),
		trail: &trailLog{},
		spec:  replicaSpec(t, "/srv/nas1/tank", "/srv/nas2/backup", "{to: nas2/backup, schedule: every 1h, retention: 1h}"),
		done:  make(chan struct{}),
	}
	// Failed attempts are not retried within the test: only the schedule's
	// first run and the triggers run.
	fl.rp = &reconcile.Replicator{Appliance: "nas1", Driver: d, Transport: fl.gate, Trail: fl.trail.add}
	fl.rp.SetRetryBase(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	fl.stop = cancel
	never := make(chan struct{})
	go func() {
		defer close(fl.done)
		fl.rp.Run(ctx, func() (*schema.Spec, uint64, <-chan struct{}) { return fl.spec, 1, never })
	}()
	t.Cleanup(fl.shutdown)
	return fl
}

// shutdown stops Run and waits for it, letting go any held attempt.
func (fl *triggerFleet) shutdown() {
	fl.stop()
	<-fl.done
}

func (fl *triggerFleet) sends() []reconcile.TrailEntry {
	fl.trail.mu.Lock()
	defer fl.trail.mu.Unlock()
	var out []reconcile.TrailEntry
	for _, e := range fl.trail.entries {
		if e.Side == reconcile.SideSend {
			out = append(out, e)
		}
	}
	return out
}

// A --now during a run does not fail: it gets the run after the one going
// (which may have snapshotted before the caller's data was written), and
// every request during that run shares the same next run.
func TestTriggerDuringRunQueuesOneMore(t *testing.T) {
	ctx := t.Context()
	fl := newTriggerFleet(t)
	fl.gate.waitEntered(t, "the share's first scheduled run")
	if got := fl.rp.Current("projects"); got != 1 {
		t.Fatalf("Current while the first run goes: want 1, got %d", got)
	}

	run, err := fl.rp.Trigger("projects")
	if err != nil {
		t.Fatalf("Trigger during a run: want no error, got %v", err)
	}
	if run != 2 {
		t.Fatalf("Trigger during run 1: want run 2, got %d", run)
	}
	again, err := fl.rp.Trigger("projects")
	if err != nil || again != 2 {
		t.Fatalf("a second Trigger during run 1: want run 2, got %d, %v", again, err)
	}
	if st := fl.rp.Status(); len(st) != 1 || !st[0].Running || !st[0].Queued {
		t.Fatalf("status with a run going and one queued: want running and queued, got %+v", st)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, done, err := fl.rp.Wait(ended, "projects", 1); done || err != nil {
		t.Fatalf("Wait for the running run with an ended context: want not done, no error; got %v, %v", done, err)
	}

	fl.gate.letGo(t)
	first, done, err := fl.rp.Wait(ctx, "projects", 1)
	if !done || err != nil {
		t.Fatalf("Wait for run 1: want done, got %v, %v", done, err)
	}
	fl.gate.waitEntered(t, "the queued run")
	if got := fl.rp.Current("projects"); got != 2 {
		t.Fatalf("Current during the queued run: want 2, got %d", got)
	}
	fl.gate.letGo(t)
	second, done, err := fl.rp.Wait(ctx, "projects", run)
	if !done || err != nil {
		t.Fatalf("Wait for run 2: want done, got %v, %v", done, err)
	}
	if first.ID == "" || first.ID == second.ID {
		t.Fatalf("runs 1 and 2: want two attempts, got IDs %q and %q", first.ID, second.ID)
	}
	if sends := fl.sends(); len(sends) != 2 || sends[1].ID != second.ID {
		t.Fatalf("trail: want exactly the two attempts, the second %s; got %+v", second.ID, sends)
	}
	if st := fl.rp.Status(); len(st) != 1 || st[0].Running || st[0].Queued {
		t.Fatalf("status after both runs: want idle, nothing queued; got %+v", st)
	}
	if got := fl.rp.Current("projects"); got != 0 {
		t.Fatalf("Current when idle: want 0, got %d", got)
	}
}

// A --now with nothing running starts a run at once, and Wait returns that
// run's trail entry.
func TestTriggerWhenIdleRunsNow(t *testing.T) {
	ctx := t.Context()
	fl := newTriggerFleet(t)
	fl.gate.waitEntered(t, "the share's first scheduled run")
	fl.gate.letGo(t)
	if _, done, err := fl.rp.Wait(ctx, "projects", 1); !done || err != nil {
		t.Fatalf("Wait for run 1: want done, got %v, %v", done, err)
	}

	run, err := fl.rp.Trigger("projects")
	if err != nil || run != 2 {
		t.Fatalf("Trigger when idle: want run 2, got %d, %v", run, err)
	}
	fl.gate.waitEntered(t, "the triggered run")
	fl.gate.letGo(t)
	e, done, err := fl.rp.Wait(ctx, "projects", run)
	if !done || err != nil {
		t.Fatalf("Wait for the triggered run: want done, got %v, %v", done, err)
	}
	if sends := fl.sends(); len(sends) != 2 || sends[1].ID != e.ID {
		t.Fatalf("trail: want the triggered attempt %s last of two, got %+v", e.ID, sends)
	}
}

// A switchover's final send (RunNext) waits for the run going to end and
// is then the very next run, even when a --now is queued: the queued
// request is served by the same run, and nothing else runs in between.
func TestRunNextWaitsForTheRunningAttempt(t *testing.T) {
	ctx := t.Context()
	fl := newTriggerFleet(t)
	fl.gate.waitEntered(t, "the share's first scheduled run")
	if _, err := fl.rp.Trigger("projects"); err != nil {
		t.Fatalf("Trigger: %v", err)
	}

	final := make(chan reconcile.TrailEntry, 1)
	go func() { final <- fl.rp.RunNext(ctx, fl.spec, "projects", nil) }()
	waitFor(t, 10*time.Second, "RunNext to wait", func() bool {
		return fl.rp.Waiting("projects") == 1
	})
	fl.gate.letGo(t)
	fl.gate.waitEntered(t, "the final send")
	if got := fl.rp.Current("projects"); got != 2 {
		t.Fatalf("the final send: want run 2, got %d", got)
	}
	fl.gate.letGo(t)
	var e reconcile.TrailEntry
	select {
	case e = <-final:
	case <-time.After(10 * time.Second):
		t.Fatal("RunNext did not return")
	}
	if sends := fl.sends(); len(sends) != 2 || sends[1].ID != e.ID {
		t.Fatalf("trail: want the scheduled run, then the final send %s; got %+v", e.ID, sends)
	}
	if st := fl.rp.Status(); len(st) != 1 || st[0].Running || st[0].Queued {
		t.Fatalf("status after the final send: want idle, the trigger served; got %+v", st)
	}
}

// RunNext gives up when its context ends while it waits, and the run it
// waited for is not disturbed.
func TestRunNextGivesUpWithItsContext(t *testing.T) {
	fl := newTriggerFleet(t)
	fl.gate.waitEntered(t, "the share's first scheduled run")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	e := fl.rp.RunNext(ctx, fl.spec, "projects", nil)
	if e.Result != reconcile.ResultFailed || e.ID != "" {
		t.Fatalf("RunNext with an ended context: want an unrecorded failure, got %+v", e)
	}
	if got := fl.rp.Current("projects"); got != 1 {
		t.Fatalf("the scheduled run: want still running as run 1, got %d", got)
	}
	fl.gate.letGo(t)
}

// A run asked for when Run stops will not happen: Wait says so instead of
// waiting forever.
func TestWaitForARunThatWillNotHappen(t *testing.T) {
	fl := newTriggerFleet(t)
	fl.gate.waitEntered(t, "the share's first scheduled run")
	run, err := fl.rp.Trigger("projects")
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	var (
		wg      sync.WaitGroup
		waitErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _, waitErr = fl.rp.Wait(t.Context(), "projects", run)
	}()
	fl.shutdown() // ends the held run through its context
	wg.Wait()
	if !errors.Is(waitErr, reconcile.ErrNoRun) {
		t.Fatalf("Wait for a queued run when Run stopped: want ErrNoRun, got %v", waitErr)
	}
}

// A failed share waits out its backoff (minutes here), unless its target
// shows it is back: RetryTo makes the share due at once.
func TestRetryToRetriesAReturningTarget(t *testing.T) {
	ctx := t.Context()
	fl := newTriggerFleet(t)
	fl.gate.waitEntered(t, "the share's first scheduled run")
	fl.gate.letGo(t)
	if e, done, err := fl.rp.Wait(ctx, "projects", 1); !done || err != nil || e.Result != reconcile.ResultFailed {
		t.Fatalf("run 1: want a failure, got %+v, %v, %v", e, done, err)
	}
	if st := fl.rp.Status(); len(st) != 1 || st[0].Failures != 1 || time.Until(st[0].NextRun) < 5*time.Minute {
		t.Fatalf("after the failure: want a retry minutes away, got %+v", st)
	}

	if n := fl.rp.RetryTo("nas3"); n != 0 {
		t.Fatalf("RetryTo another appliance: want 0 shares, got %d", n)
	}
	if n := fl.rp.RetryTo("nas2"); n != 1 {
		t.Fatalf("RetryTo the share's target: want 1 share, got %d", n)
	}
	fl.gate.waitEntered(t, "the retry")
	if got := fl.rp.Current("projects"); got != 2 {
		t.Fatalf("the retry: want run 2, got %d", got)
	}
	if n := fl.rp.RetryTo("nas2"); n != 0 {
		t.Fatalf("RetryTo while the retry runs: want 0 shares, got %d", n)
	}
	fl.gate.letGo(t)
}

// Hold waits for the run going to end, then keeps every run from
// starting (a trigger made meanwhile too) until it is released; the
// triggered run starts right after.
func TestHoldKeepsRunsOff(t *testing.T) {
	ctx := t.Context()
	fl := newTriggerFleet(t)
	fl.gate.waitEntered(t, "the share's first scheduled run")

	held := make(chan func(), 1)
	go func() {
		release, err := fl.rp.Hold(ctx, "projects")
		if err != nil {
			t.Errorf("Hold: %v", err)
			close(held)
			return
		}
		held <- release
	}()
	select {
	case <-held:
		t.Fatal("Hold returned while a run was going")
	default:
	}
	fl.gate.letGo(t)
	var release func()
	select {
	case release = <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("Hold did not return after the run ended")
	}
	if release == nil {
		t.FailNow()
	}
	run, err := fl.rp.Trigger("projects")
	if err != nil {
		t.Fatalf("Trigger while held: %v", err)
	}
	select {
	case <-fl.gate.entered:
		t.Fatal("a run started while held")
	case <-time.After(300 * time.Millisecond):
		// A run that would start starts at once (it only waits for the
		// wake-up); no fixed wait makes this test pass, only fail late.
	}
	release()
	release() // twice is once
	fl.gate.waitEntered(t, "the run triggered while held, after the release")
	if got := fl.rp.Current("projects"); got != run {
		t.Errorf("the run after the release is %d, want the triggered %d", got, run)
	}
	fl.gate.letGo(t)

	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := fl.rp.Trigger("projects"); err != nil {
		t.Fatal(err)
	}
	fl.gate.waitEntered(t, "one more triggered run")
	if _, err := fl.rp.Hold(ended, "projects"); err == nil {
		t.Error("Hold with an ended context while a run goes: want an error")
	}
}
