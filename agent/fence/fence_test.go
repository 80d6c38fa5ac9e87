package fence

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestDue(t *testing.T) {
	active := Records{"projects": {Path: "/tank/projects", Epoch: 2}}
	for _, tc := range []struct {
		name   string
		last   Heartbeat
		since  time.Duration // from the beat's receipt to now
		exited bool
		want   bool
		why    string
	}{
		{"nothing writable, agent gone", Heartbeat{}, time.Hour, true, false, ""},
		{"nothing writable, silent", Heartbeat{}, time.Hour, false, false, ""},
		{"writable, agent gone: at once", Heartbeat{Active: active, LeaseLeftMS: 2500}, 0, true, true, "the agent exited"},
		{"writable, silent within its lease", Heartbeat{Active: active, LeaseLeftMS: 2500}, 2500 * time.Millisecond, false, false, ""},
		{"writable, silent within grace", Heartbeat{Active: active, LeaseLeftMS: 2500}, 2500*time.Millisecond + Grace, false, false, ""},
		{"writable, silent past lease and grace", Heartbeat{Active: active, LeaseLeftMS: 2500}, 2500*time.Millisecond + Grace + time.Millisecond, false, true, "no heartbeat from the agent for 4.501s"},
		{"lease lapsed, agent still says writable, within grace", Heartbeat{Active: active, LeaseLeftMS: -300}, Grace - 300*time.Millisecond, false, false, ""},
		{"lease lapsed, agent still says writable, past grace", Heartbeat{Active: active, LeaseLeftMS: -300}, Grace - 299*time.Millisecond, false, true, "lease lapsed 2.001s ago"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Due(tc.last, t0, t0.Add(tc.since), tc.exited)
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("Due: want %v %q, got %v %q", tc.want, tc.why, got, why)
			}
		})
	}
}

// TestDueAgentBeatingButStuck: an agent whose fencing is stuck keeps
// beating that its share is writable, each beat with less lease left. The
// deadline does not move with the beats: the guard fences Grace after the
// lease lapsed.
func TestDueAgentBeatingButStuck(t *testing.T) {
	active := Records{"projects": {Path: "/tank/projects"}}
	lapse := t0.Add(time.Second)
	for at := t0; at.Before(t0.Add(time.Minute)); at = at.Add(BeatInterval) {
		h := Heartbeat{Active: active, LeaseLeftMS: lapse.Sub(at).Milliseconds()}
		fire, _ := Due(h, at, at, false)
		if want := at.After(lapse.Add(Grace)); fire != want {
			t.Fatalf("a beat at %v with %dms left: want fence=%v, got %v", at.Sub(t0), h.LeaseLeftMS, want, fire)
		}
		if fire {
			return
		}
	}
	t.Fatal("an agent beating 'writable' past its lease was never fenced")
}

// roSetter records the subvolumes made read-only; it can be told to fail.
type roSetter struct {
	mu   sync.Mutex
	ro   []string
	fail error
}

func (s *roSetter) SetReadOnly(_ context.Context, path string, readOnly bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if readOnly {
		s.ro = append(s.ro, path)
	}
	return nil
}

func (s *roSetter) paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(slices.Values(s.ro))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// share makes a directory standing for a subvolume (it exists).
func share(t *testing.T, name string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGuardFencesWhenTheAgentExits(t *testing.T) {
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &roSetter{}
	g := &Guard{Beats: r, Driver: d, DataDir: dir, Log: quiet()}
	type result struct {
		fenced []string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		f, err := g.Run(t.Context())
		done <- result{f, err}
	}()
	p := share(t, "projects")
	b := NewBeater(w)
	b.Beat(Heartbeat{Active: Records{"projects": {Path: p, Epoch: 3}}, LeaseLeftMS: 60_000})
	// The agent dies after its beat is out: its end of the pipe closes.
	waitWritten(t, b)
	b.Close()
	res := <-done
	if res.err != nil || !slices.Equal(res.fenced, []string{"projects"}) {
		t.Fatalf("guard: want projects fenced, got %v, %v", res.fenced, res.err)
	}
	if got := d.paths(); !slices.Equal(got, []string{p}) {
		t.Fatalf("read-only: want [%s], got %v", p, got)
	}
	recs, err := ReadRecords(dir, FileFenced)
	if err != nil || recs["projects"] != (Record{Path: p, Epoch: 3}) {
		t.Fatalf("%s: want projects at epoch 3, got %v, %v", FileFenced, recs, err)
	}
}

// waitWritten waits until the beater has written its queued beat.
func waitWritten(t *testing.T, b *Beater) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		pending := b.latest != nil
		b.mu.Unlock()
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the beat was not written within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGuardFencesAndKillsASilentAgent(t *testing.T) {
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	d := &roSetter{}
	killed := make(chan struct{})
	g := &Guard{
		Beats: r, Driver: d, DataDir: dir, Log: quiet(), Tick: 10 * time.Millisecond,
		// A killed agent's pipe closes.
		Kill: func() error { close(killed); return w.Close() },
	}
	p := share(t, "projects")
	const left = 100 * time.Millisecond
	line, _ := json.Marshal(Heartbeat{Active: Records{"projects": {Path: p, Epoch: 0}}, LeaseLeftMS: left.Milliseconds()})
	sent := time.Now()
	if _, err := w.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	// Then the agent falls silent.
	f, err := g.Run(t.Context())
	took := time.Since(sent)
	if err != nil || !slices.Equal(f, []string{"projects"}) {
		t.Fatalf("want projects fenced, got %v, %v", f, err)
	}
	// It received the beat after it was sent, so it cannot have fenced
	// before the lease and the grace were over.
	if took < left+Grace {
		t.Fatalf("fenced %v after the last beat, before its lease (%v) and the grace (%v) were over", took, left, Grace)
	}
	select {
	case <-killed:
	default:
		t.Fatal("the silent agent was not killed")
	}
	if recs, _ := ReadRecords(dir, FileFenced); recs["projects"].Path != p {
		t.Fatalf("%s: want projects recorded, got %v", FileFenced, recs)
	}
}

func TestGuardLeavesACleanStopAlone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &roSetter{}
	g := &Guard{Beats: r, Driver: d, DataDir: t.TempDir(), Log: quiet()}
	b := NewBeater(w)
	b.Beat(Heartbeat{}) // the agent fenced its shares itself as it stopped
	waitWritten(t, b)
	b.Close()
	f, err := g.Run(t.Context())
	if err != nil || len(f) != 0 || len(d.paths()) != 0 {
		t.Fatalf("clean stop: want nothing fenced, got %v %v %v", f, d.paths(), err)
	}
}

func TestFenceAllSkipsMissingAndRecords(t *testing.T) {
	dir := t.TempDir()
	p := share(t, "projects")
	if err := WriteRecords(dir, FileFenced, Records{"old": {Path: "/gone/old", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	d := &roSetter{}
	done, err := FenceAll(t.Context(), missingAware{d}, dir, Records{"projects": {Path: p, Epoch: 4}, "media": {Path: filepath.Join(dir, "no-such"), Epoch: 1}})
	if err != nil || !slices.Equal(done, []string{"projects"}) {
		t.Fatalf("FenceAll: want [projects], got %v, %v", done, err)
	}
	recs, err := ReadRecords(dir, FileFenced)
	if err != nil || len(recs) != 2 || recs["projects"].Epoch != 4 || recs["old"].Epoch != 1 {
		t.Fatalf("%s: want old and projects, got %v, %v", FileFenced, recs, err)
	}

	d.fail = errors.New("btrfs: boom")
	_, err = FenceAll(t.Context(), d, dir, Records{"projects": {Path: p}})
	if err == nil || !strings.Contains(err.Error(), "fence share projects: btrfs: boom") {
		t.Fatalf("a failing btrfs: want the share named in the error, got %v", err)
	}
}

// missingAware fails on a path that does not exist, as btrfs does.
type missingAware struct{ *roSetter }

func (m missingAware) SetReadOnly(ctx context.Context, path string, ro bool) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	return m.roSetter.SetReadOnly(ctx, path, ro)
}

func TestLockAgent(t *testing.T) {
	dir := t.TempDir()
	if pid, err := RunningAgent(dir); err != nil || pid != 0 {
		t.Fatalf("no agent yet: want 0, got %d, %v", pid, err)
	}
	lock, err := LockAgent(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pid, err := RunningAgent(dir); err != nil || pid != os.Getpid() {
		t.Fatalf("agent running: want pid %d, got %d, %v", os.Getpid(), pid, err)
	}
	if _, err := LockAgent(dir, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("a second agent on the data dir: want refused, got %v", err)
	}
	lock.Release()
	if pid, err := RunningAgent(dir); err != nil || pid != 0 {
		t.Fatalf("agent gone: want 0, got %d, %v", pid, err)
	}
}
