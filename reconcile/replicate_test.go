package reconcile_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/looppool/looppooltest"
	"github.com/fleetctl/fleetctl/schema"
)

// Replication tests run two appliances in one process: nas1 with pool tank
// (the source of share projects) and nas2 with pool backup (its target),
// each a loop-mounted btrfs. The Replicator on nas1 reaches the Receiver
// on nas2 through pipeTransport, which streams through an io.Pipe as a
// network transport would.

// replicaFleet is the two appliances, the engine on both and what it
// recorded.
type replicaFleet struct {
	t        testing.TB
	btrfs    *reconcile.Btrfs
	src, dst string // the pools' mount paths
	spec     *schema.Spec
	clock    *fakeClock
	rp       *reconcile.Replicator
	rv       *reconcile.Receiver
	tr       *pipeTransport
	trail    *trailLog
}

// replicaStart is when the fake clock starts: a Wednesday, on the hour.
var replicaStart = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// newReplicaFleet makes the two pools (size bytes each, 0 for the
// smallest), the share projects on nas1 with replication (a flow mapping,
// like "{to: nas2/backup, schedule: every 1h, retention: 1h}"), and the
// engine on both sides, on a fake clock.
func newReplicaFleet(t testing.TB, size int64, replication string) *replicaFleet {
	t.Helper()
	src := looppooltest.ForTest(t, size).Path()
	dst := looppooltest.ForTest(t, size).Path()
	spec := replicaSpec(t, src, dst, replication)
	fl := &replicaFleet{
		t: t, btrfs: reconcile.NewBtrfs(""), src: src, dst: dst, spec: spec,
		clock: &fakeClock{t: replicaStart},
		trail: &trailLog{},
	}
	fl.rv = &reconcile.Receiver{Appliance: "nas2", Driver: fl.btrfs, Trail: fl.trail.add, Now: fl.clock.Now}
	fl.tr = &pipeTransport{rv: fl.rv, spec: spec, peer: "nas1"}
	fl.rp = &reconcile.Replicator{Appliance: "nas1", Driver: fl.btrfs, Transport: fl.tr, Trail: fl.trail.add, Now: fl.clock.Now}
	if err := fl.btrfs.CreateSubvolume(t.Context(), fl.share()); err != nil {
		t.Fatal(err)
	}
	return fl
}

// replicaSpec is the spec of the two appliances with the share projects
// on nas1's pool at src, replicated to nas2's pool at dst.
func replicaSpec(t testing.TB, src, dst, replication string) *schema.Spec {
	t.Helper()
	spec, err := schema.Parse("fleet.yaml", []byte(fmt.Sprintf(`version: 1
appliances:
  - name: nas1
    address: nas1.example:7400
    pools:
      - {name: tank, path: %s}
  - name: nas2
    address: nas2.example:7400
    pools:
      - {name: backup, path: %s}
shares:
  - name: projects
    appliance: nas1
    pool: tank
    replication: %s
`, src, dst, replication)))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// share is the share's path on nas1.
func (fl *replicaFleet) share() string { return filepath.Join(fl.src, "projects") }

// receivedDir is the share's received directory on nas2.
func (fl *replicaFleet) receivedDir() string {
	return filepath.Join(fl.dst, reconcile.ReceivedDir, "projects")
}

// run makes one attempt at the clock's time and checks its result.
func (fl *replicaFleet) run(ctx context.Context, want string) reconcile.TrailEntry {
	fl.t.Helper()
	e := fl.rp.RunOnce(ctx, fl.spec, "projects", nil)
	if e.Result != want {
		fl.t.Fatalf("attempt at %s: result %s (%s), want %s", fl.clock.Now().Format(time.TimeOnly), e.Result, e.Error, want)
	}
	return e
}

// write writes size pseudo-random bytes (from seed) to the file rel of the
// share.
func (fl *replicaFleet) write(rel string, size int64, seed uint64) {
	fl.t.Helper()
	path := filepath.Join(fl.share(), rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fl.t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		fl.t.Fatal(err)
	}
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	if _, err := io.Copy(f, io.LimitReader(rand.NewChaCha8(key), size)); err != nil {
		fl.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		fl.t.Fatal(err)
	}
}

// sourceSnapshots are the names in the share's replication directory on
// nas1, every subvolume there.
func (fl *replicaFleet) sourceSnapshots() []string {
	fl.t.Helper()
	return fl.names(fl.src, reconcile.ReplicationDir+"/projects/")
}

// received checks that every subvolume in the share's received directory on
// nas2 is a completed receive (final name, read-only, received UUID) and
// returns their names, oldest first.
func (fl *replicaFleet) received() []string {
	fl.t.Helper()
	subs, err := fl.btrfs.Subvolumes(context.Background(), fl.dst)
	if err != nil {
		fl.t.Fatal(err)
	}
	var names []string
	for _, s := range reconcile.ReceivedSnapshots(subs, "projects") {
		if !s.Complete() {
			fl.t.Errorf("%s on nas2: not a completed receive: %+v", s.Subvolume().Path, s.Subvolume())
		}
		names = append(names, s.Name())
	}
	return names
}

func (fl *replicaFleet) names(pool, prefix string) []string {
	fl.t.Helper()
	subs, err := fl.btrfs.Subvolumes(context.Background(), pool)
	if err != nil {
		fl.t.Fatal(err)
	}
	var names []string
	for _, s := range subs {
		if name, ok := strings.CutPrefix(s.Path, prefix); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// checkSame checks that the received snapshot of stamp holds exactly what
// the share holds, byte for byte.
func (fl *replicaFleet) checkSame(stamp string) {
	fl.t.Helper()
	want := treeHashes(fl.t, fl.share())
	got := treeHashes(fl.t, filepath.Join(fl.receivedDir(), "projects."+stamp))
	for p, h := range want {
		if got[p] != h {
			fl.t.Errorf("received %s: %s is %q, want %q", stamp, p, got[p], h)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			fl.t.Errorf("received %s: %s is not in the share", stamp, p)
		}
	}
}

// treeHashes describes every entry below root: a file by the SHA-256 of its
// content and its mode, a directory by its mode, a symlink by its target.
func treeHashes(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			out[rel] = "symlink " + target
			return err
		case d.IsDir():
			out[rel] = "dir " + info.Mode().String()
		default:
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
			out[rel] = "file " + info.Mode().String() + " " + hex.EncodeToString(h.Sum(nil))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// trailLog collects trail entries as the agent would store them.
type trailLog struct {
	mu      sync.Mutex
	entries []reconcile.TrailEntry
}

func (l *trailLog) add(ctx context.Context, e reconcile.TrailEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
}

// side returns the entry of attempt id recorded by side.
func (l *trailLog) side(t testing.TB, id, side string) reconcile.TrailEntry {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.ID == id && e.Side == side {
			return e
		}
	}
	t.Fatalf("no %s trail entry for attempt %s in %+v", side, id, l.entries)
	return reconcile.TrailEntry{}
}

// count counts the entries of side with result.
func (l *trailLog) count(side, result string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.entries {
		if e.Side == side && e.Result == result {
			n++
		}
	}
	return n
}

func (l *trailLog) all() []reconcile.TrailEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

// errCut is how pipeTransport breaks a stream, like a connection reset.
var errCut = errors.New("connection reset by the test")

// pipeTransport is the Transport of the tests: it calls the Receiver in
// process, through an io.Pipe, as a peer named peer. It can play an
// unreachable target, cut the stream, or hold an attempt in Held.
type pipeTransport struct {
	rv *reconcile.Receiver

	mu        sync.Mutex
	spec      *schema.Spec
	peer      string                      // the name the receiver sees, as from a certificate
	down      error                       // Held and Send fail with it: the target is unreachable
	sendErr   error                       // Send fails with it before streaming; Held works
	cutAfter  int64                       // the stream breaks after this many bytes; 0 never
	shareCtx  bool                        // the receiver runs under the sender's context
	onHeld    func()                      // called in Held, to hold an attempt there
	header    func(*reconcile.SendHeader) // changes the header on the way
	active    int                         // Sends under way
	maxActive int
	sends     int
}

var _ reconcile.Transport = (*pipeTransport)(nil)

func (tr *pipeTransport) set(f func(tr *pipeTransport)) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	f(tr)
}

func (tr *pipeTransport) Held(ctx context.Context, target, share string) ([]reconcile.Subvolume, error) {
	tr.mu.Lock()
	down, onHeld, spec := tr.down, tr.onHeld, tr.spec
	tr.mu.Unlock()
	if onHeld != nil {
		onHeld()
	}
	if target != tr.rv.Appliance {
		return nil, fmt.Errorf("no appliance %s", target)
	}
	if down != nil {
		return nil, down
	}
	return tr.rv.Held(ctx, spec, share)
}

func (tr *pipeTransport) Send(ctx context.Context, target string, h reconcile.SendHeader, stream io.Reader) (reconcile.ReceiveResult, error) {
	tr.mu.Lock()
	peer, down, sendErr, cut, shareCtx, header, spec := tr.peer, tr.down, tr.sendErr, tr.cutAfter, tr.shareCtx, tr.header, tr.spec
	tr.sends++
	tr.active++
	tr.maxActive = max(tr.maxActive, tr.active)
	tr.mu.Unlock()
	defer tr.set(func(tr *pipeTransport) { tr.active-- })
	switch {
	case target != tr.rv.Appliance:
		return reconcile.ReceiveResult{}, fmt.Errorf("no appliance %s", target)
	case down != nil:
		return reconcile.ReceiveResult{}, down
	case sendErr != nil:
		return reconcile.ReceiveResult{}, sendErr
	}
	if header != nil {
		header(&h)
	}
	pr, pw := io.Pipe()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if cut > 0 {
			_, err := io.CopyN(pw, stream, cut)
			if err == nil {
				err = errCut
			}
			pw.CloseWithError(err)
			return
		}
		_, err := io.CopyBuffer(pw, stream, make([]byte, 256<<10))
		pw.CloseWithError(err)
	}()
	rctx := context.Background() // a server's request has its own context
	if shareCtx {
		rctx = ctx
	}
	res, err := tr.rv.Receive(rctx, spec, peer, h, pr)
	pr.CloseWithError(errors.New("the receiver has answered"))
	<-copied
	return res, err
}

// TestReplicateFullThenIncremental replicates a share twice: in full, then
// the changes, and the target holds the share's files byte for byte after
// each.
func TestReplicateFullThenIncremental(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 24h}")
	ctx := t.Context()
	fl.write("a.bin", 1<<20, 1)
	fl.write("docs/b.txt", 100<<10, 2)
	fl.write("empty", 0, 3)
	if err := os.Symlink("a.bin", filepath.Join(fl.share(), "link")); err != nil {
		t.Fatal(err)
	}

	first := fl.run(ctx, reconcile.ResultOK)
	if first.Kind != reconcile.KindFull || first.Parent != "" || first.Snapshot != "20261125T120000Z" {
		t.Errorf("first attempt: kind %q parent %q snapshot %q; want full, no parent, 20261125T120000Z", first.Kind, first.Parent, first.Snapshot)
	}
	fl.checkSame(first.Snapshot)
	recv := fl.trail.side(t, first.ID, reconcile.SideReceive)
	if recv.Result != reconcile.ResultOK || recv.Kind != reconcile.KindFull || recv.From != "nas1" || recv.To != "nas2" || recv.Bytes != first.Bytes || recv.Snapshot != first.Snapshot {
		t.Errorf("receive side of the first attempt: %+v; sender said %+v", recv, first)
	}
	if first.Bytes < 1<<20 || first.Throughput() <= 0 && first.End.After(first.Start) {
		t.Errorf("first attempt sent %d bytes at %.0f B/s; want over 1 MiB", first.Bytes, first.Throughput())
	}

	// Change the share: rewrite a file, delete one, add one.
	fl.write("a.bin", 1<<20, 4)
	if err := os.Remove(filepath.Join(fl.share(), "docs/b.txt")); err != nil {
		t.Fatal(err)
	}
	fl.write("docs/c.txt", 10<<10, 5)
	fl.clock.Advance(time.Hour)

	second := fl.run(ctx, reconcile.ResultOK)
	if second.Kind != reconcile.KindIncremental || second.Parent != first.Snapshot {
		t.Errorf("second attempt: kind %q parent %q; want incremental from %s", second.Kind, second.Parent, first.Snapshot)
	}
	fl.checkSame(second.Snapshot)
	recv = fl.trail.side(t, second.ID, reconcile.SideReceive)
	if recv.Result != reconcile.ResultOK || recv.Kind != reconcile.KindIncremental || recv.Parent != first.Snapshot {
		t.Errorf("receive side of the second attempt: %+v", recv)
	}
	if second.Bytes >= first.Bytes {
		t.Errorf("the incremental sent %d bytes, the full %d", second.Bytes, first.Bytes)
	}
	// The source keeps the one snapshot the next incremental needs.
	if got := fl.sourceSnapshots(); !slices.Equal(got, []string{second.Snapshot}) {
		t.Errorf("replication snapshots on nas1: %q, want [%s]", got, second.Snapshot)
	}
	if got, want := fl.received(), []string{"projects." + first.Snapshot, "projects." + second.Snapshot}; !slices.Equal(got, want) {
		t.Errorf("received on nas2: %q, want %q", got, want)
	}
	held, err := fl.rv.Held(ctx, fl.spec, "projects")
	if err != nil || len(held) != 2 {
		t.Errorf("Held = %+v, %v; want 2 snapshots", held, err)
	}
}

// TestReplicateInterrupted breaks the stream in the middle, in the
// transport and by killing the sender: nothing half-received stays on the
// target, both trails say why it failed, and the next attempt is an
// incremental from the last snapshot both sides hold.
func TestReplicateInterrupted(t *testing.T) {
	fl := newReplicaFleet(t, 512<<20, "{to: nas2/backup, schedule: every 1h, retention: 24h}")
	ctx := t.Context()
	fl.write("base.bin", 64<<20, 1)
	base := fl.run(ctx, reconcile.ResultOK)
	// 48 MiB of changes: a cut at 8 MiB lands well inside the stream.
	fl.write("more.bin", 48<<20, 2)

	const cutAt = 8 << 20
	checkFailed := func(t *testing.T, e reconcile.TrailEntry, why string) {
		t.Helper()
		if e.Kind != reconcile.KindIncremental || e.Parent != base.Snapshot {
			t.Errorf("failed attempt: kind %q parent %q; want incremental from %s", e.Kind, e.Parent, base.Snapshot)
		}
		if !strings.Contains(e.Error, why) {
			t.Errorf("failed attempt's error %q does not say %q", e.Error, why)
		}
		recv := fl.trail.side(t, e.ID, reconcile.SideReceive)
		if recv.Result != reconcile.ResultFailed || recv.Error == "" {
			t.Errorf("receive side of the failed attempt: %+v", recv)
		} else {
			t.Logf("receiver's trail: %s", recv.Error)
		}
		if got, want := fl.received(), []string{"projects." + base.Snapshot}; !slices.Equal(got, want) {
			t.Errorf("received on nas2 after the failure: %q, want %q", got, want)
		}
		if got := fl.sourceSnapshots(); !slices.Equal(got, []string{base.Snapshot}) {
			t.Errorf("replication snapshots on nas1 after the failure: %q, want the common one %s", got, base.Snapshot)
		}
	}

	t.Run("transport cut", func(t *testing.T) {
		fl.clock.Advance(time.Minute)
		fl.tr.set(func(tr *pipeTransport) { tr.cutAfter = cutAt })
		defer fl.tr.set(func(tr *pipeTransport) { tr.cutAfter = 0 })
		e := fl.run(ctx, reconcile.ResultFailed)
		checkFailed(t, e, errCut.Error())
	})
	for _, shareCtx := range []bool{false, true} {
		name := "sender killed"
		if shareCtx {
			name += ", receiver's context ends too"
		}
		t.Run(name, func(t *testing.T) {
			fl.clock.Advance(time.Minute)
			fl.tr.set(func(tr *pipeTransport) { tr.shareCtx = shareCtx })
			defer fl.tr.set(func(tr *pipeTransport) { tr.shareCtx = false })
			kctx, kill := context.WithCancel(ctx)
			defer kill()
			e := fl.rp.RunOnce(kctx, fl.spec, "projects", func(n int64) {
				if n > cutAt {
					kill()
				}
			})
			if e.Result != reconcile.ResultFailed {
				t.Fatalf("killed attempt: %+v", e)
			}
			checkFailed(t, e, "killed")
		})
	}

	fl.clock.Advance(time.Minute)
	next := fl.run(ctx, reconcile.ResultOK)
	if next.Kind != reconcile.KindIncremental || next.Parent != base.Snapshot {
		t.Errorf("attempt after the failures: kind %q parent %q; want incremental from %s", next.Kind, next.Parent, base.Snapshot)
	}
	fl.checkSame(next.Snapshot)
	if got := fl.sourceSnapshots(); !slices.Equal(got, []string{next.Snapshot}) {
		t.Errorf("replication snapshots on nas1: %q, want [%s]", got, next.Snapshot)
	}
}

// TestReplicateRefusesUnknownSender sends as an appliance the spec does not
// name as the share's source: the target refuses and writes nothing.
func TestReplicateRefusesUnknownSender(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	ctx := t.Context()
	fl.write("a.bin", 64<<10, 1)
	fl.tr.set(func(tr *pipeTransport) { tr.peer = "mallory" })

	e := fl.run(ctx, reconcile.ResultRefused)
	if !strings.Contains(e.Error, "refused") || !strings.Contains(e.Error, "not from mallory") {
		t.Errorf("sender's error %q does not say who was refused", e.Error)
	}
	recv := fl.trail.side(t, e.ID, reconcile.SideReceive)
	if recv.Result != reconcile.ResultRefused || recv.From != "mallory" {
		t.Errorf("receive side: %+v; want refused, from mallory", recv)
	}
	if _, err := os.Stat(filepath.Join(fl.dst, reconcile.MetaDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the target wrote %s: %v", filepath.Join(fl.dst, reconcile.MetaDir), err)
	}
	if got := fl.sourceSnapshots(); len(got) != 0 {
		t.Errorf("replication snapshots on nas1 after a refusal: %q, want none", got)
	}
}

// TestReplicateRetention replicates every 25 minutes for four hours with a
// retention of 1h: old snapshots go on both sides, the common one stays,
// and every attempt after the first is incremental.
func TestReplicateRetention(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 25m, retention: 1h}")
	ctx := t.Context()
	var last reconcile.TrailEntry
	for i := range 10 {
		fl.write(fmt.Sprintf("f%d", i), 32<<10, uint64(i))
		e := fl.run(ctx, reconcile.ResultOK)
		if i > 0 && (e.Kind != reconcile.KindIncremental || e.Parent != last.Snapshot) {
			t.Errorf("attempt %d: kind %q parent %q; want incremental from %s", i, e.Kind, e.Parent, last.Snapshot)
		}
		if got := fl.sourceSnapshots(); !slices.Equal(got, []string{e.Snapshot}) {
			t.Errorf("attempt %d: replication snapshots on nas1: %q, want [%s]", i, got, e.Snapshot)
		}
		last = e
		fl.clock.Advance(25 * time.Minute)
	}
	// Attempts ran at 12:00, 12:25, …, 15:45. At 15:45, "1h" keeps the
	// first of 15:xx (15:20) and of 14:xx (14:05); keep_min the newest.
	got := fl.received()
	want := []string{"projects.20261125T140500Z", "projects.20261125T152000Z", "projects.20261125T154500Z"}
	if !slices.Equal(got, want) {
		t.Errorf("received on nas2: %q, want %q", got, want)
	}
	fl.checkSame(last.Snapshot)
	e := fl.run(ctx, reconcile.ResultOK)
	if e.Kind != reconcile.KindIncremental || e.Parent != last.Snapshot {
		t.Errorf("attempt after pruning: kind %q parent %q; want incremental from %s", e.Kind, e.Parent, last.Snapshot)
	}
}

// TestReplicateTargetUnreachable fails attempt after attempt, first because
// the target cannot be reached, then because it fails every receive: the
// source keeps the common snapshot and nothing piles up.
func TestReplicateTargetUnreachable(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	ctx := t.Context()
	fl.write("a.bin", 64<<10, 1)

	// Unreachable from the start: nothing is snapshotted.
	down := errors.New("dial nas2.example:7400: connection refused")
	fl.tr.set(func(tr *pipeTransport) { tr.down = down })
	e := fl.run(ctx, reconcile.ResultFailed)
	if !strings.Contains(e.Error, down.Error()) || e.Snapshot != "" {
		t.Errorf("attempt to an unreachable target: %+v", e)
	}
	if got := fl.sourceSnapshots(); len(got) != 0 {
		t.Errorf("replication snapshots on nas1: %q, want none", got)
	}

	fl.tr.set(func(tr *pipeTransport) { tr.down = nil })
	base := fl.run(ctx, reconcile.ResultOK)

	for _, fault := range []struct {
		name string
		set  func(tr *pipeTransport)
	}{
		{"unreachable", func(tr *pipeTransport) { tr.down = down }},
		{"receive fails", func(tr *pipeTransport) { tr.sendErr = errors.New("nas2: no space left on device") }},
	} {
		fl.tr.set(fault.set)
		for range 4 {
			fl.clock.Advance(time.Hour)
			fl.write("a.bin", 64<<10, uint64(fl.clock.Now().Unix()))
			fl.run(ctx, reconcile.ResultFailed)
			if got := fl.sourceSnapshots(); !slices.Equal(got, []string{base.Snapshot}) {
				t.Fatalf("%s: replication snapshots on nas1: %q, want only the common %s", fault.name, got, base.Snapshot)
			}
		}
		fl.tr.set(func(tr *pipeTransport) { tr.down, tr.sendErr = nil, nil })
	}
	fl.clock.Advance(time.Hour)
	e = fl.run(ctx, reconcile.ResultOK)
	if e.Kind != reconcile.KindIncremental || e.Parent != base.Snapshot {
		t.Errorf("attempt after the target is back: kind %q parent %q; want incremental from %s", e.Kind, e.Parent, base.Snapshot)
	}
	fl.checkSame(e.Snapshot)
}

// TestReplicateCommonAfterLostAnswer loses the receiver's answer after a
// complete receive: the source asks again, learns the target holds the new
// snapshot, and keeps it as the parent of the next incremental.
func TestReplicateCommonAfterLostAnswer(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	ctx := t.Context()
	fl.write("a.bin", 64<<10, 1)
	fl.run(ctx, reconcile.ResultOK)
	fl.clock.Advance(time.Hour)
	lost := &lostAnswer{pipeTransport: fl.tr}
	fl.rp.Transport = lost
	e := fl.run(ctx, reconcile.ResultFailed)
	if got := fl.sourceSnapshots(); !slices.Equal(got, []string{e.Snapshot}) {
		t.Errorf("replication snapshots on nas1: %q, want the one the target holds, %s", got, e.Snapshot)
	}
	fl.rp.Transport = fl.tr
	fl.clock.Advance(time.Hour)
	next := fl.run(ctx, reconcile.ResultOK)
	if next.Kind != reconcile.KindIncremental || next.Parent != e.Snapshot {
		t.Errorf("next attempt: kind %q parent %q; want incremental from %s", next.Kind, next.Parent, e.Snapshot)
	}
}

// lostAnswer is a transport whose Sends succeed on the target but fail on
// the way back.
type lostAnswer struct{ *pipeTransport }

func (l *lostAnswer) Send(ctx context.Context, target string, h reconcile.SendHeader, stream io.Reader) (reconcile.ReceiveResult, error) {
	if _, err := l.pipeTransport.Send(ctx, target, h, stream); err != nil {
		return reconcile.ReceiveResult{}, err
	}
	return reconcile.ReceiveResult{}, errors.New("read tcp: connection reset by peer")
}

// TestReplicatorRun runs the scheduler on the real clock: a share on
// "every 2s" replicates again and again; Trigger runs one now, and RunOnce
// while it runs starts nothing. (trigger_test.go tests the queue of
// triggers.)
func TestReplicatorRun(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 2s, retention: 1h}")
	fl.rp.Now, fl.rv.Now = nil, nil
	fl.write("a.bin", 64<<10, 1)

	var mu sync.Mutex
	spec, changed := fl.spec, make(chan struct{})
	watch := func() (*schema.Spec, uint64, <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		return spec, 1, changed
	}
	setSpec := func(s *schema.Spec) {
		mu.Lock()
		defer mu.Unlock()
		spec = s
		close(changed)
		changed = make(chan struct{})
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() {
		fl.rp.Run(ctx, watch)
		close(done)
	}()

	start := time.Now()
	waitFor(t, 20*time.Second, "three scheduled attempts", func() bool { return fl.trail.count(reconcile.SideSend, reconcile.ResultOK) >= 3 })
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("three attempts on every 2s took only %v", took)
	}

	// Hourly now, so only triggers run.
	hourly := replicaSpec(t, fl.src, fl.dst, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	fl.tr.set(func(tr *pipeTransport) { tr.spec = hourly })
	setSpec(hourly)
	waitFor(t, 10*time.Second, "the last scheduled attempt to end", func() bool {
		st := fl.rp.Status()
		return len(st) == 1 && !st[0].Running && st[0].Schedule == "every 1h"
	})
	before := fl.trail.count(reconcile.SideSend, reconcile.ResultOK)

	entered, release := make(chan struct{}, 1), make(chan struct{})
	fl.tr.set(func(tr *pipeTransport) {
		tr.onHeld = func() {
			select {
			case entered <- struct{}{}:
				<-release
			default:
			}
		}
	})
	run, err := fl.rp.Trigger("projects")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Trigger started no attempt")
	}
	if st := fl.rp.Status(); len(st) != 1 || !st[0].Running || !st[0].NextRun.IsZero() {
		t.Errorf("status while running: %+v", st)
	}
	if e := fl.rp.RunOnce(ctx, hourly, "projects", nil); !strings.Contains(e.Error, reconcile.ErrRunning.Error()) {
		t.Errorf("RunOnce while running: %+v", e)
	}
	close(release)
	waitFor(t, 10*time.Second, "the triggered attempt", func() bool { return fl.trail.count(reconcile.SideSend, reconcile.ResultOK) == before+1 })
	if _, done, err := fl.rp.Wait(ctx, "projects", run); !done || err != nil {
		t.Errorf("Wait for the triggered run: done %v, %v", done, err)
	}
	if n := fl.trail.count(reconcile.SideSend, reconcile.ResultOK); n != before+1 {
		t.Errorf("%d attempts after one trigger, want 1", n-before)
	}
	fl.tr.mu.Lock()
	if fl.tr.maxActive != 1 {
		t.Errorf("%d attempts ran at once, want 1", fl.tr.maxActive)
	}
	fl.tr.mu.Unlock()
	st := fl.rp.Status()
	if len(st) != 1 || st[0].LastResult != reconcile.ResultOK || st[0].Target != "nas2/backup" || st[0].Bytes == 0 || !st[0].NextRun.After(time.Now()) {
		t.Errorf("status after the trigger: %+v", st)
	}

	if _, err := fl.rp.Trigger("nope"); !errors.Is(err, reconcile.ErrNotSource) {
		t.Errorf("Trigger of a share not in the spec: %v, want ErrNotSource", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := fl.rp.Trigger("projects"); err == nil {
		t.Error("Trigger after Run ended succeeded")
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingTransport answers Held with nothing and reads Sends to the end.
type countingTransport struct {
	mu    sync.Mutex
	sends int
}

func (c *countingTransport) Held(ctx context.Context, target, share string) ([]reconcile.Subvolume, error) {
	return nil, nil
}

func (c *countingTransport) Send(ctx context.Context, target string, h reconcile.SendHeader, stream io.Reader) (reconcile.ReceiveResult, error) {
	c.mu.Lock()
	c.sends++
	c.mu.Unlock()
	_, err := io.Copy(io.Discard, stream)
	return reconcile.ReceiveResult{}, err
}

func (c *countingTransport) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sends
}

// TestReplicatorRunKeepsSchedule starts Run after an earlier agent
// replicated at noon: with an hourly schedule it waits for 13:00, not
// replicating at once; a missed tick runs once, and a failure is retried
// after 10s.
func TestReplicatorRunKeepsSchedule(t *testing.T) {
	d := newDisk(t)
	d.subvol("/tank/projects")
	d.ok(d.MkdirAll(t.Context(), "/tank/"+reconcile.ReplicationDir+"/projects"))
	d.ok(d.Snapshot(t.Context(), "/tank/projects", "/tank/"+reconcile.ReplicationDir+"/projects/20261125T120000Z", true))
	spec := mustSpec(t, "  - {name: projects, appliance: nas1, pool: tank, replication: {to: nas2/tank, schedule: every 1h, retention: 1h}}\n")
	clock := &fakeClock{t: replicaStart.Add(10 * time.Minute)}
	tr := &countingTransport{}
	rp := &reconcile.Replicator{Appliance: "nas1", Driver: d, Transport: tr, Now: clock.Now}

	changed := make(chan struct{})
	var mu sync.Mutex
	watch := func() (*schema.Spec, uint64, <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		return spec, 1, changed
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		rp.Run(ctx, watch)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()

	waitFor(t, 5*time.Second, "the share's schedule", func() bool {
		st := rp.Status()
		return len(st) == 1 && st[0].NextRun.Equal(replicaStart.Add(time.Hour))
	})
	time.Sleep(100 * time.Millisecond)
	if n := tr.count(); n != 0 {
		t.Fatalf("%d attempts before the schedule was due", n)
	}

	// Three hours on: the missed ticks run once. The fake driver cannot
	// send, so the attempt fails and is retried after 10s.
	clock.Advance(3 * time.Hour)
	mu.Lock()
	close(changed)
	changed = make(chan struct{})
	mu.Unlock()
	waitFor(t, 5*time.Second, "the failed attempt", func() bool {
		st := rp.Status()
		return len(st) == 1 && st[0].Failures == 1 && !st[0].Running
	})
	time.Sleep(100 * time.Millisecond)
	if n := tr.count(); n != 1 {
		t.Errorf("%d attempts for the missed ticks, want 1", n)
	}
	st := rp.Status()
	if want := clock.Now().Add(10 * time.Second); !st[0].NextRun.Equal(want) || st[0].LastResult != reconcile.ResultFailed {
		t.Errorf("status after the failure: %+v; want a retry at %s", st[0], want.Format(time.TimeOnly))
	}
	// The target holds nothing, so the failed attempt left nothing behind.
	subs, err := d.Subvolumes(t.Context(), "/tank")
	d.ok(err)
	if snaps := reconcile.ReplicationSnapshots(subs, "projects"); len(snaps) != 0 {
		t.Errorf("replication snapshots after the failed attempt: %+v", snaps)
	}
}

func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		failures int
		limit    time.Duration
		want     time.Duration
	}{
		{1, reconcile.MaxRetry, 10 * time.Second},
		{2, reconcile.MaxRetry, 20 * time.Second},
		{6, reconcile.MaxRetry, 320 * time.Second},
		{7, reconcile.MaxRetry, reconcile.MaxRetry},
		{1000, reconcile.MaxRetry, reconcile.MaxRetry},
		{1, 2 * time.Second, 2 * time.Second},
		{3, time.Minute, 40 * time.Second},
		{4, time.Minute, time.Minute},
	} {
		if got := reconcile.Backoff(0, c.failures, c.limit); got != c.want {
			t.Errorf("backoff after %d failures, limit %v = %v, want %v", c.failures, c.limit, got, c.want)
		}
	}
	hourly, _ := schema.ParseSchedule("0 * * * *")
	daily, _ := schema.ParseSchedule("every 24h")
	if got := reconcile.Interval(hourly, replicaStart); got != time.Hour {
		t.Errorf("interval of an hourly cron line = %v", got)
	}
	if got := min(reconcile.Interval(daily, replicaStart), reconcile.MaxRetry); got != reconcile.MaxRetry {
		t.Errorf("retry cap of every 24h = %v", got)
	}
}

// Benchmarks of a full replication of 256 MiB through the engine and the
// in-process transport, against the same data through a plain
// "btrfs send | btrfs receive" pipe. The ratio is the engine's overhead.

const benchShareBytes = 256 << 20

func benchFleet(b *testing.B) *replicaFleet {
	fl := newReplicaFleet(b, 1<<30, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	fl.rp.Now, fl.rv.Now = nil, nil
	fl.write("data.bin", benchShareBytes, 1)
	// Written to disk before the timer starts: the first snapshot would
	// otherwise commit it.
	if out, err := exec.Command("btrfs", "filesystem", "sync", fl.src).CombinedOutput(); err != nil {
		b.Fatalf("btrfs filesystem sync: %v: %s", err, out)
	}
	return fl
}

// emptyTarget deletes everything received, and waits for btrfs to free it.
func (fl *replicaFleet) emptyTarget(b testing.TB, dir string) {
	b.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if err := fl.btrfs.DeleteSubvolume(context.Background(), filepath.Join(dir, e.Name())); err != nil {
			b.Fatal(err)
		}
	}
	// A commit wakes btrfs's cleaner, which frees deleted subvolumes;
	// otherwise it sleeps up to 30s.
	for _, args := range [][]string{{"filesystem", "sync", fl.dst}, {"subvolume", "sync", fl.dst}} {
		if out, err := exec.Command("btrfs", args...).CombinedOutput(); err != nil {
			b.Fatalf("btrfs %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

func BenchmarkReplicateFull256MiB(b *testing.B) {
	fl := benchFleet(b)
	ctx := context.Background()
	b.SetBytes(benchShareBytes)
	b.ResetTimer()
	for b.Loop() {
		e := fl.rp.RunOnce(ctx, fl.spec, "projects", nil)
		if e.Result != reconcile.ResultOK || e.Kind != reconcile.KindFull {
			b.Fatalf("attempt: %+v", e)
		}
		b.StopTimer()
		fl.emptyTarget(b, fl.receivedDir())
		b.StartTimer()
	}
}

func BenchmarkSendReceivePipe256MiB(b *testing.B) {
	fl := benchFleet(b)
	ctx := context.Background()
	snap := filepath.Join(fl.src, "snap")
	if err := fl.btrfs.Snapshot(ctx, fl.share(), snap, true); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(fl.dst, "recv")
	if err := os.Mkdir(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchShareBytes)
	b.ResetTimer()
	for b.Loop() {
		send := exec.Command("btrfs", "send", "-q", snap)
		recv := exec.Command("btrfs", "receive", "-q", "-e", dir)
		pipe, err := send.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		recv.Stdin = pipe
		if err := recv.Start(); err != nil {
			b.Fatal(err)
		}
		var stderr strings.Builder
		send.Stderr = &stderr
		if err := send.Run(); err != nil {
			b.Fatalf("btrfs send: %v: %s", err, stderr.String())
		}
		if err := recv.Wait(); err != nil {
			b.Fatalf("btrfs receive: %v", err)
		}
		b.StopTimer()
		fl.emptyTarget(b, dir)
		b.StartTimer()
	}
}
