package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
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

// failoverFleet is two appliances on real btrfs, each a loop pool: nas1
// (pool tank, the share's spec appliance) and nas2 (pool backup, its
// replica), with the planner, executor, replicator and receiver of both,
// and one activation of the share both agree on, as the Raft store would
// hand it to them.
type failoverFleet struct {
	t        *testing.T
	btrfs    *reconcile.Btrfs
	n1, n2   string // the pools' mount paths
	spec     *schema.Spec
	clock    *fakeClock
	trail    *trailLog
	rv1, rv2 *reconcile.Receiver
	rp1, rp2 *reconcile.Replicator

	mu  sync.Mutex
	act schema.Activation
}

func newFailoverFleet(t *testing.T) *failoverFleet {
	n1 := looppooltest.ForTest(t, 0).Path()
	n2 := looppooltest.ForTest(t, 0).Path()
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
    quota: 100MiB
    snapshots: {schedule: every 1h, retention: 24h}
    replication: {to: nas2/backup, schedule: every 1h, retention: 24h}
`, n1, n2)))
	if err != nil {
		t.Fatal(err)
	}
	fl := &failoverFleet{t: t, btrfs: reconcile.NewBtrfs(""), n1: n1, n2: n2, spec: spec, clock: &fakeClock{t: replicaStart}, trail: &trailLog{}}
	fl.rv1 = &reconcile.Receiver{Appliance: "nas1", Driver: fl.btrfs, Trail: fl.trail.add, Active: fl.active, Now: fl.clock.Now}
	fl.rv2 = &reconcile.Receiver{Appliance: "nas2", Driver: fl.btrfs, Trail: fl.trail.add, Active: fl.active, Now: fl.clock.Now}
	fl.rp1 = &reconcile.Replicator{Appliance: "nas1", Driver: fl.btrfs, Trail: fl.trail.add, Active: fl.active, Now: fl.clock.Now,
		Transport: &pipeTransport{rv: fl.rv2, spec: spec, peer: "nas1"}}
	fl.rp2 = &reconcile.Replicator{Appliance: "nas2", Driver: fl.btrfs, Trail: fl.trail.add, Active: fl.active, Now: fl.clock.Now,
		Transport: &pipeTransport{rv: fl.rv1, spec: spec, peer: "nas2"}}
	return fl
}

func (fl *failoverFleet) active(string) schema.Activation {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.act
}

func (fl *failoverFleet) failover(act schema.Activation) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.act = act
}

// reconcile observes, plans and executes on appliance, as its loop would,
// fails the test on a failed action, and returns the plan.
func (fl *failoverFleet) reconcile(appliance string) []string {
	fl.t.Helper()
	ctx := context.Background()
	var active map[string]schema.Activation
	if act := fl.active("projects"); act != (schema.Activation{}) {
		active = map[string]schema.Activation{"projects": act}
	}
	plan := reconcile.Plan(reconcile.PlanInput{Spec: fl.spec, Appliance: appliance, Observed: reconcile.Observe(ctx, fl.btrfs, fl.spec, appliance), Now: fl.clock.Now(), Active: active})
	for _, r := range reconcile.Execute(ctx, fl.btrfs, plan) {
		if r.Err != nil {
			fl.t.Fatalf("%s: %v", appliance, r.Err)
		}
	}
	return lines(plan)
}

// subvolume returns the subvolume at the path relative to pool.
func (fl *failoverFleet) subvolume(pool, rel string) reconcile.Subvolume {
	fl.t.Helper()
	subs, err := fl.btrfs.Subvolumes(context.Background(), pool)
	if err != nil {
		fl.t.Fatal(err)
	}
	for _, s := range subs {
		if s.Path == rel {
			return s
		}
	}
	fl.t.Fatalf("no subvolume %s in %s", rel, pool)
	return reconcile.Subvolume{}
}

// writeFile writes size pseudo-random bytes (from seed) to path.
func writeFile(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, io.LimitReader(rand.NewChaCha8(key), size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// sameTree checks that two directories hold the same files, byte for byte.
func sameTree(t testing.TB, what, got, want string) {
	t.Helper()
	g, w := treeHashes(t, got), treeHashes(t, want)
	for p, h := range w {
		if g[p] != h {
			t.Errorf("%s: %s is %q, want %q (as in %s)", what, p, g[p], h, want)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: %s is not in %s", what, p, want)
		}
	}
}

// TestFailoverOnRealBtrfs replicates nas1 → nas2, writes more on nas1,
// fails the share over to nas2 and checks what each appliance then does:
// nas2 promotes its received snapshot to a writable share with the
// replicated content; nas1 keeps the share, reports it demoted and keeps
// its unreplicated writes as a read-only snapshot; nas2 refuses nas1's
// streams of the old epoch; nas2 replicates back to nas1 incrementally,
// from the received snapshot it promoted, and then from its own.
func TestFailoverOnRealBtrfs(t *testing.T) {
	fl := newFailoverFleet(t)
	ctx := t.Context()
	share1, share2 := filepath.Join(fl.n1, "projects"), filepath.Join(fl.n2, "projects")

	// Before the failover: nas1 makes the share, nas2 does nothing.
	if got := fl.reconcile("nas1"); !slices.Contains(got, "+ create share projects (quota 100MiB)") {
		t.Fatalf("nas1's first plan: %q", got)
	}
	if got := fl.reconcile("nas2"); len(got) != 0 {
		t.Fatalf("nas2's plan before the failover: %q", got)
	}
	writeFile(t, filepath.Join(share1, "a.bin"), 2<<20, 1)
	writeFile(t, filepath.Join(share1, "docs/b.txt"), 64<<10, 2)
	full := fl.rp1.RunOnce(ctx, fl.spec, "projects", nil)
	if full.Result != reconcile.ResultOK || full.Kind != reconcile.KindFull {
		t.Fatalf("nas1 → nas2: %+v", full)
	}
	received := filepath.Join(fl.n2, reconcile.ReceivedDir, "projects", "projects."+full.Snapshot)
	sameTree(t, "received on nas2", received, share1)

	// Written on nas1 after the last replication: on nas1 only.
	writeFile(t, filepath.Join(share1, "a.bin"), 2<<20, 3)
	writeFile(t, filepath.Join(share1, "late.bin"), 128<<10, 4)

	fl.failover(schema.Activation{Appliance: "nas2", Epoch: 1})
	fl.clock.Advance(time.Minute)

	// nas2 promotes, then applies the share's quota and snapshots there.
	got := fl.reconcile("nas2")
	want := []string{
		"~ enable quotas on pool backup (needed by projects)",
		"+ promote share projects (from projects." + full.Snapshot + ")",
		"~ quota projects none → 100MiB",
		"+ directory .fleetctl/snapshots/projects on pool backup",
		"+ snapshot projects (every 1h, first)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("nas2's plan after the failover:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	sameTree(t, "the promoted share", share2, received)
	promoted := fl.subvolume(fl.n2, "projects")
	base := fl.subvolume(fl.n2, reconcile.ReceivedDir+"/projects/projects."+full.Snapshot)
	x := fl.subvolume(fl.n1, reconcile.ReplicationDir+"/projects/"+full.Snapshot)
	if promoted.ReadOnly || promoted.ReceivedUUID != "" || promoted.ParentUUID != base.UUID {
		t.Errorf("promoted share %+v; want writable, a snapshot of %s", promoted, base.UUID)
	}
	if !base.ReadOnly || base.ReceivedUUID != x.UUID {
		t.Errorf("the received snapshot after promotion: %+v; want read-only with received UUID %s", base, x.UUID)
	}
	if got := fl.reconcile("nas2"); len(got) != 0 {
		t.Errorf("nas2's second plan: %q", got)
	}

	// nas1: the store's fencing made the share read-only; the planner keeps
	// the unreplicated writes and reports, once.
	if err := fl.btrfs.SetReadOnly(ctx, share1, true); err != nil {
		t.Fatal(err)
	}
	kept := reconcile.DivergedPath(fl.n1, "projects", fl.clock.Now())
	want = []string{
		"+ keep diverged writes of share projects (as .fleetctl/diverged/" + filepath.Base(kept) + ")",
		"! demoted share projects (epoch 1 active on nas2; kept read-only)",
	}
	if got := fl.reconcile("nas1"); !slices.Equal(got, want) {
		t.Fatalf("nas1's plan after the failover:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	sameTree(t, "nas1's diverged snapshot", kept, share1)
	if d := fl.subvolume(fl.n1, reconcile.DivergedDir+"/"+filepath.Base(kept)); !d.ReadOnly {
		t.Errorf("diverged snapshot %+v is writable", d)
	}
	divergedTree := treeHashes(t, kept)
	// Reading the read-only share changes nothing (no atime there).
	treeHashes(t, share1)
	fl.clock.Advance(time.Minute)
	if got := fl.reconcile("nas1"); !slices.Equal(got, want[1:]) {
		t.Errorf("nas1's second plan: %q; want only %q", got, want[1:])
	}

	// nas1's streams of epoch 0 are refused by nas2, which is at epoch 1.
	stale := reconcile.SendHeader{ID: "stale", Share: "projects", From: "nas1", Snapshot: fl.clock.Now().UTC().Format(reconcile.StampFormat), UUID: x.UUID}
	if _, err := fl.rv2.Receive(ctx, fl.spec, "nas1", stale, untouchable{t}); !errors.Is(err, reconcile.ErrRefused) || !strings.Contains(err.Error(), "from epoch 0 of share projects, which is at epoch 1 (active on nas2)") {
		t.Errorf("nas2 received an epoch 0 stream: %v", err)
	}
	if e := fl.trail.side(t, "stale", reconcile.SideReceive); e.Result != reconcile.ResultRefused {
		t.Errorf("trail of the stale stream: %+v", e)
	}
	// nas1 no longer replicates the share; one that still thinks it does
	// is refused too.
	if e := fl.rp1.RunOnce(ctx, fl.spec, "projects", nil); e.Result != reconcile.ResultFailed || !strings.Contains(e.Error, "active on nas2 since epoch 1") {
		t.Errorf("nas1 replicating after the failover: %+v", e)
	}
	staleRp := &reconcile.Replicator{Appliance: "nas1", Driver: fl.btrfs, Trail: fl.trail.add, Now: fl.clock.Now, Transport: fl.rp1.Transport}
	if e := staleRp.RunOnce(ctx, fl.spec, "projects", nil); e.Result != reconcile.ResultRefused {
		t.Errorf("a stale nas1 replicating: %+v; want refused", e)
	}
	if got := fl.reconcile("nas1"); !slices.Equal(got, want[1:]) {
		t.Errorf("nas1's plan after the refusals: %q", got)
	}

	// Reverse replication, nas2 → nas1: incremental from the received
	// snapshot nas2 promoted, which nas1 finds as its own snapshot X.
	writeFile(t, filepath.Join(share2, "after.bin"), 256<<10, 5)
	fl.clock.Advance(time.Minute)
	back := fl.rp2.RunOnce(ctx, fl.spec, "projects", nil)
	if back.Result != reconcile.ResultOK || back.Kind != reconcile.KindIncremental || back.Parent != full.Snapshot || back.To != "nas1" {
		t.Fatalf("nas2 → nas1: %+v; want an incremental from %s", back, full.Snapshot)
	}
	if !strings.Contains(back.Note, "incremental from the received snapshot projects."+full.Snapshot) {
		t.Errorf("trail note %q", back.Note)
	}
	t.Logf("full nas1 → nas2: %d bytes; first reverse incremental nas2 → nas1: %d bytes (%s)", full.Bytes, back.Bytes, back.Note)
	if back.Bytes >= full.Bytes/2 {
		t.Errorf("the incremental sent %d bytes, the full %d: not incremental", back.Bytes, full.Bytes)
	}
	if recv := fl.trail.side(t, back.ID, reconcile.SideReceive); recv.Result != reconcile.ResultOK || recv.Kind != reconcile.KindIncremental || recv.From != "nas2" || recv.To != "nas1" {
		t.Errorf("nas1's side of the reverse replication: %+v", recv)
	}
	back1 := filepath.Join(fl.n1, reconcile.ReceivedDir, "projects", "projects."+back.Snapshot)
	sameTree(t, "nas1's received copy", back1, share2)
	y := fl.subvolume(fl.n2, reconcile.ReplicationDir+"/projects/"+back.Snapshot)
	if r := fl.subvolume(fl.n1, reconcile.ReceivedDir+"/projects/projects."+back.Snapshot); r.ReceivedUUID != y.UUID || r.ParentUUID != x.UUID {
		t.Errorf("nas1 received %+v; want received UUID %s, a snapshot of its X %s", r, y.UUID, x.UUID)
	}

	// And again: incremental from nas2's own replication snapshot.
	writeFile(t, filepath.Join(share2, "docs/b.txt"), 32<<10, 6)
	if err := os.Remove(filepath.Join(share2, "a.bin")); err != nil {
		t.Fatal(err)
	}
	fl.clock.Advance(time.Minute)
	again := fl.rp2.RunOnce(ctx, fl.spec, "projects", nil)
	if again.Result != reconcile.ResultOK || again.Kind != reconcile.KindIncremental || again.Parent != back.Snapshot || again.Note != "" {
		t.Fatalf("nas2 → nas1 again: %+v; want an incremental from %s", again, back.Snapshot)
	}
	sameTree(t, "nas1's received copy", filepath.Join(fl.n1, reconcile.ReceivedDir, "projects", "projects."+again.Snapshot), share2)
	if got := fl.names(fl.n2, reconcile.ReplicationDir+"/projects/"); !slices.Equal(got, []string{again.Snapshot}) {
		t.Errorf("nas2's replication snapshots: %q", got)
	}

	// Nothing was lost or thrown away on either side: nas1 still has its
	// share as it was, its diverged writes, and X; nas2 its base.
	sameTree(t, "nas1's share", share1, kept)
	if got := treeHashes(t, kept); len(got) != len(divergedTree) {
		t.Errorf("nas1's diverged snapshot changed")
	}
	fl.subvolume(fl.n1, reconcile.ReplicationDir+"/projects/"+full.Snapshot)
	fl.subvolume(fl.n2, reconcile.ReceivedDir+"/projects/projects."+full.Snapshot)
	if got := fl.reconcile("nas1"); !slices.Equal(got, want[1:]) {
		t.Errorf("nas1's plan at the end: %q", got)
	}
	if got := fl.reconcile("nas2"); len(got) != 0 {
		t.Errorf("nas2's plan at the end: %q", got)
	}
}

func (fl *failoverFleet) names(pool, prefix string) []string {
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
