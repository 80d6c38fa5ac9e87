package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/reconciletest"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// The witness tests run real in-process fleets whose storage appliances
// have a reconciletest.FakeDriver, with a fast witness policy, so that leases,
// fencing and failovers happen within seconds. They prove the wiring and
// the appliance's side; what the leader decides is tested with an injected
// clock in witnessdecide_test.go, and their waits are bounded polls.

// policy is a witness policy for a test spec; a zero degraded means the
// default.
type policy struct{ failoverAfter, fenceAfter, degraded time.Duration }

// fastPolicy is the fastest policy validation accepts with fence_after 3s:
// fence_after <= failover_after - max(5s, failover_after/4).
var fastPolicy = policy{failoverAfter: 8 * time.Second, fenceAfter: 3 * time.Second}

// restart starts n again from its data dir, address and driver, as an
// agent restarted on the same appliance.
func restart(t *testing.T, n *Node) *Node {
	t.Helper()
	return startNode(t, Config{DataDir: n.cfg.DataDir, Listen: n.cfg.Listen, Driver: n.cfg.Driver})
}

// testShare is a replicated share of a test spec.
type testShare struct {
	name, on, to string
	failover     schema.Failover
}

// witnessFleet starts one node per role, named n1, n2, ...: storage
// appliances get a FakeDriver with the pool /srv/<name>/tank. It returns
// once every node has all of them in its configuration and a leader is
// ready.
func witnessFleet(t *testing.T, roles ...schema.Role) ([]*Node, map[string]*reconciletest.FakeDriver) {
	t.Helper()
	drivers := map[string]*reconciletest.FakeDriver{}
	var nodes []*Node
	for i, role := range roles {
		name := fmt.Sprintf("n%d", i+1)
		var cfg Config
		if i == 0 {
			cfg = bootstrapConfig(t, name)
		} else {
			cfg = joinConfig(t, name, nodes[0])
		}
		if role == schema.RoleStorage {
			d := reconciletest.NewFakeDriver()
			d.AddPool(poolPath(name))
			drivers[name] = d
			cfg.Driver = d
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	waitMembers(t, nodes, names(nodes)...)
	readyLeader(t, nodes)
	return nodes, drivers
}

func poolPath(appliance string) string { return "/srv/" + appliance + "/tank" }

func sharePath(appliance, share string) string { return filepath.Join(poolPath(appliance), share) }

// witnessSpec is a spec with the nodes as appliances (the given roles) and
// the shares, each replicated from its appliance to the to appliance.
func witnessSpec(nodes []*Node, roles []schema.Role, p policy, shares ...testShare) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nwitness:\n  failover_after: %s\n  fence_after: %s\n", p.failoverAfter, p.fenceAfter)
	if p.degraded != 0 {
		fmt.Fprintf(&b, "  degraded_latency: %s\n", p.degraded)
	}
	b.WriteString("appliances:\n")
	for i, n := range nodes {
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n", n.Name(), n.cfg.Advertise)
		if roles[i] == schema.RoleWitness {
			b.WriteString("    role: witness\n")
			continue
		}
		fmt.Fprintf(&b, "    pools: [{name: tank, path: %s}]\n", poolPath(n.Name()))
	}
	if len(shares) > 0 {
		b.WriteString("shares:\n")
	}
	for _, sh := range shares {
		fmt.Fprintf(&b, "  - name: %s\n    appliance: %s\n    pool: tank\n    replication:\n      to: %s/tank\n      schedule: every 1h\n      retention: 24h\n    failover: %s\n",
			sh.name, sh.on, sh.to, sh.failover)
	}
	return b.String()
}

// seedShare creates a share on its appliance's FakeDriver with a
// replication snapshot taken now, so the replicator's schedule (every 1h)
// does not try to send (FakeDriver does not model send) during the test.
func seedShare(t *testing.T, d *reconciletest.FakeDriver, appliance, share string) {
	t.Helper()
	ctx := t.Context()
	dir := filepath.Join(poolPath(appliance), reconcile.ReplicationDir, share)
	stamp := time.Now().UTC().Format(reconcile.StampFormat)
	for _, err := range []error{
		d.CreateSubvolume(ctx, sharePath(appliance, share)),
		d.MkdirAll(ctx, dir),
		d.Snapshot(ctx, sharePath(appliance, share), filepath.Join(dir, stamp), true),
	} {
		if err != nil {
			t.Fatalf("seed share %s on %s: %v", share, appliance, err)
		}
	}
}

// applyWitnessSpec seeds the shares, applies the spec through the leader
// and waits until every node has it.
func applyWitnessSpec(t *testing.T, nodes []*Node, drivers map[string]*reconciletest.FakeDriver, roles []schema.Role, p policy, shares ...testShare) string {
	t.Helper()
	for _, sh := range shares {
		seedShare(t, drivers[sh.on], sh.on, sh.name)
	}
	yaml := witnessSpec(nodes, roles, p, shares...)
	if _, err := clientFor(t, readyLeader(t, nodes)).Apply(t.Context(), client.ApplyRequest{YAML: yaml}); err != nil {
		t.Fatalf("apply the witness spec: %v\n%s", err, yaml)
	}
	waitSpec(t, nodes, 1, yaml)
	return yaml
}

// waitRenewing waits until the leader of nodes counts a received renewal
// from every named appliance, with a measured round trip.
func waitRenewing(t *testing.T, nodes []*Node, appliances ...string) *client.WitnessStatus {
	t.Helper()
	var ws *client.WitnessStatus
	waitUntil(t, fmt.Sprintf("the leader to count renewals from %v", appliances), func() (bool, string) {
		var err error
		ws, err = clientFor(t, readyLeader(t, nodes)).WitnessStatus(t.Context())
		if err != nil {
			return false, err.Error()
		}
		for _, name := range appliances {
			i := slices.IndexFunc(ws.Members, func(m client.WitnessMember) bool { return m.Name == name })
			if i < 0 || !ws.Members[i].Reachable || ws.Members[i].RTTMillis <= 0 || ws.Members[i].LastRenewalMS > 1500 {
				return false, fmt.Sprintf("%+v", ws.Members)
			}
		}
		return true, ""
	})
	return ws
}

// waitRenewals waits until each of the storage appliances has had k more
// lease renewals answered.
func waitRenewals(t *testing.T, k int, appliances ...*Node) {
	t.Helper()
	answered := func(n *Node) time.Time {
		n.lease.mu.Lock()
		defer n.lease.mu.Unlock()
		return n.lease.answered
	}
	last := make([]time.Time, len(appliances))
	count := make([]int, len(appliances))
	for i, n := range appliances {
		last[i] = answered(n)
	}
	waitUntil(t, fmt.Sprintf("%d more renewals answered for each of %v", k, names(appliances)), func() (bool, string) {
		done := true
		for i, n := range appliances {
			if a := answered(n); a.After(last[i]) {
				last[i], count[i] = a, count[i]+1
			}
			done = done && count[i] >= k
		}
		return done, fmt.Sprintf("answered %v", count)
	})
}

// except returns nodes without the given ones.
func except(nodes []*Node, drop ...*Node) []*Node {
	var out []*Node
	for _, n := range nodes {
		if !slices.Contains(drop, n) {
			out = append(out, n)
		}
	}
	return out
}

// waitFailover waits until every one of nodes has share active on active
// at epoch, and returns the entry.
func waitFailover(t *testing.T, nodes []*Node, share, active string, epoch uint64) store.FailoverState {
	t.Helper()
	var fo store.FailoverState
	for _, n := range nodes {
		waitUntil(t, fmt.Sprintf("%s to have %s active on %s at epoch %d", n.Name(), share, active, epoch), func() (bool, string) {
			var ok bool
			fo, ok = n.FSM().State().Failover[share]
			return ok && fo.Active == active && fo.Epoch == epoch, fmt.Sprintf("%+v (present %v)", fo, ok)
		})
	}
	return fo
}

// findEvents returns the witness log entries with the event (and share,
// when not empty).
func findEvents(st *store.State, event, share string) []store.WitnessEvent {
	var out []store.WitnessEvent
	for _, e := range st.WitnessLog {
		if e.Event == event && (share == "" || e.Share == share) {
			out = append(out, e)
		}
	}
	return out
}

func waitEvent(t *testing.T, n *Node, event, share string) store.WitnessEvent {
	t.Helper()
	var found []store.WitnessEvent
	waitUntil(t, fmt.Sprintf("a %q witness event for %q on %s", event, share, n.Name()), func() (bool, string) {
		st := n.FSM().State()
		found = findEvents(st, event, share)
		return len(found) > 0, fmt.Sprintf("%+v", st.WitnessLog)
	})
	return found[0]
}

func readOnly(d *reconciletest.FakeDriver, path string) (ro, exists bool) {
	sv, ok := d.Lookup(path)
	return sv.ReadOnly, ok
}

func TestWitnessLeaseIdleFleetWritesNothing(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleWitness}
	nodes, drivers := witnessFleet(t, roles...)
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", "n1", "n2", schema.FailoverAuto})

	ws := waitRenewing(t, nodes, "n1", "n2")
	if ws.Policy.FailoverAfterMS != 8000 || ws.Policy.FenceAfterMS != 3000 || ws.Policy.DegradedLatencyMS != 250 {
		t.Fatalf("witness status policy: want 8000/3000/250 ms, got %+v", ws.Policy)
	}
	if len(ws.Members) != 3 {
		t.Fatalf("witness status: want 3 members, got %+v", ws.Members)
	}
	for _, m := range ws.Members {
		wantLease := m.Name != "n3"
		if m.Lease != wantLease || !m.Reachable || m.Degraded {
			t.Fatalf("witness status of %s: want lease=%v, reachable, not degraded; got %+v", m.Name, wantLease, m)
		}
	}
	if w := ws.Members[2]; w.Role != schema.RoleWitness || w.LastRenewalMS != -1 {
		t.Fatalf("witness status of the witness appliance n3: want role witness and no lease, got %+v", w)
	}
	if want := (client.ShareFailover{Share: "projects", Active: "n1", Replica: "n2", Failover: schema.FailoverAuto}); len(ws.Shares) != 1 || !reflect.DeepEqual(ws.Shares[0], want) {
		t.Fatalf("witness status shares: want projects active on n1 at epoch 0, got %+v", ws.Shares)
	}
	for _, n := range nodes[:2] {
		n.lease.mu.Lock()
		answered, rtt := n.lease.answered, n.lease.rtt
		n.lease.mu.Unlock()
		if time.Since(answered) > 2*LeaseInterval || rtt <= 0 {
			t.Fatalf("%s's lease: want a renewal answered within %v with a round trip, got one sent %v ago, rtt %v", n.Name(), 2*LeaseInterval, time.Since(answered), rtt)
		}
		t.Logf("%s: lease round trip %v", n.Name(), rtt)
	}
	if n3 := nodes[2]; !n3.lease.answered.IsZero() {
		t.Fatalf("the witness appliance n3 renewed a lease; only storage appliances do")
	}

	// Settle: both storage appliances have reported their reconcile.
	leader := readyLeader(t, nodes)
	waitUntil(t, "both storage appliances to report", func() (bool, string) {
		st := leader.FSM().State()
		return st.Nodes["n1"].ObservedGeneration == 1 && st.Nodes["n2"].ObservedGeneration == 1, fmt.Sprintf("%+v", st.Nodes)
	})
	// One renewal round to settle, then three more that must write
	// nothing.
	waitRenewals(t, 1, nodes[0], nodes[1])
	before := leader.raft.LastIndex()
	waitRenewals(t, 3, nodes[0], nodes[1])
	if after := leader.raft.LastIndex(); after != before {
		t.Fatalf("an idle fleet wrote to the Raft log: last index %d, then %d; witness log %+v", before, after, leader.FSM().State().WitnessLog)
	}
	if l := leader.FSM().State().WitnessLog; len(l) != 0 {
		t.Fatalf("an idle fleet wrote witness events: %+v", l)
	}
	log, err := clientFor(t, nodes[2]).WitnessLog(t.Context())
	if err != nil || len(log) != 0 {
		t.Fatalf("witness log through the API: want empty, got %+v (%v)", log, err)
	}
	st, err := clientFor(t, nodes[1]).Status(t.Context())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(st.Shares) != 1 || st.Shares[0].Active != "n1" || st.Shares[0].Epoch != 0 || st.Shares[0].Fenced {
		t.Fatalf("status shares: want projects active on n1 at epoch 0, not fenced; got %+v", st.Shares)
	}
}

// wantMetric fails unless n's metrics have line (name, labels and value
// as the text format writes them).
func wantMetric(t *testing.T, n *Node, line string) {
	t.Helper()
	rec := httptest.NewRecorder()
	n.metrics.http.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !slices.Contains(strings.Split(rec.Body.String(), "\n"), line) {
		name, _, _ := strings.Cut(line, "{")
		var got []string
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, name) {
				got = append(got, l)
			}
		}
		t.Fatalf("%s's metrics: want %s, got %q", n.Name(), line, got)
	}
}

func TestWitnessFailsOverUnreachableAppliance(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleStorage}
	nodes, drivers := witnessFleet(t, roles...)
	leader := readyLeader(t, nodes)
	rest := except(nodes, leader)
	active, replica := rest[0], rest[1]
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", active.Name(), replica.Name(), schema.FailoverAuto})
	waitRenewing(t, nodes, names(nodes)...)

	stop(t, active)
	stopped := time.Now()
	up := except(nodes, active)
	fo := waitFailover(t, up, "projects", replica.Name(), 1)
	took := time.Since(stopped)
	t.Logf("failover committed %v after %s stopped (failover_after %v)", took.Round(time.Millisecond), active.Name(), fastPolicy.failoverAfter)
	// The leader counts from the last renewal it received, at most one
	// interval before the stop.
	if lo := fastPolicy.failoverAfter - LeaseInterval - WitnessTick; took < lo {
		t.Fatalf("failover after %v: want no sooner than %v", took, lo)
	}
	if hi := fastPolicy.failoverAfter + 3*time.Second; took > hi {
		t.Fatalf("failover after %v: want it within %v", took, hi)
	}
	if fo.ChangedAt.IsZero() || !strings.Contains(fo.Reason, "unreachable for") {
		t.Fatalf("failover entry: want a time and a reason, got %+v", fo)
	}

	for _, n := range up {
		st := n.FSM().State()
		evs := findEvents(st, store.EventFailover, "projects")
		if len(evs) != 1 {
			t.Fatalf("%s's witness log: want one failover event, got %+v", n.Name(), st.WitnessLog)
		}
		e := evs[0]
		wantDetail := fmt.Sprintf("projects now active on %s, epoch 1", replica.Name())
		if e.Member != active.Name() || !strings.HasPrefix(e.Detail, active.Name()+" unreachable for ") ||
			!strings.Contains(e.Detail, "> failover_after 8s; "+wantDetail) {
			t.Fatalf("%s's failover event: want %s unreachable ... > failover_after 8s; %s, got %+v", n.Name(), active.Name(), wantDetail, e)
		}
		t.Logf("%s: witness log: %s", n.Name(), e.Detail)
		// Every agent up counts it, by its reason, and the epoch moved.
		wantMetric(t, n, `fleetctl_failovers_total{reason="unreachable",share="projects"} 1`)
		wantMetric(t, n, `fleetctl_share_epoch{share="projects"} 1`)
		if len(findEvents(st, store.EventUnreachable, "")) == 0 {
			t.Fatalf("%s's witness log: want an unreachable event before the failover, got %+v", n.Name(), st.WitnessLog)
		}
	}

	// The leader's witness has it unreachable.
	wantMetric(t, readyLeader(t, up), fmt.Sprintf(`fleetctl_witness_reachable{appliance=%q} 0`, active.Name()))

	// Compare-and-set: a second failover decided on the old epoch fails
	// and changes nothing.
	leader = readyLeader(t, up)
	before := leader.FSM().State()
	data, err := store.EncodeCommand(store.CmdFailover, store.FailoverShare{Share: "projects", From: active.Name(), To: replica.Name(), ExpectedEpoch: 0, Reason: "stale", At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Response(leader.raft.Apply(data, 5*time.Second))
	if !errors.Is(err, store.ErrEpochMismatch) {
		t.Fatalf("failover with the old epoch: want store.ErrEpochMismatch, got %v", err)
	}
	after := leader.FSM().State()
	if after.Failover["projects"] != before.Failover["projects"] || len(after.WitnessLog) != len(before.WitnessLog) {
		t.Fatalf("a refused failover changed the state: %+v -> %+v", before.Failover, after.Failover)
	}

	st, err := clientFor(t, replica).Status(t.Context())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(st.Shares) != 1 || st.Shares[0].Active != replica.Name() || st.Shares[0].Replica != active.Name() || st.Shares[0].Epoch != 1 {
		t.Fatalf("status after the failover: want projects active on %s at epoch 1, got %+v", replica.Name(), st.Shares)
	}
	// The new active appliance renews: nothing fails over again.
	waitRenewing(t, up, replica.Name())
	if fo := leader.FSM().State().Failover["projects"]; fo.Epoch != 1 {
		t.Fatalf("after the failover: want epoch 1 to stay, got %+v", fo)
	}

	// The old active fenced its copy as it stopped. A crash that fenced
	// nothing leaves it writable: make it so. Back, the agent starts
	// fenced, learns of the failover and keeps its copy read-only.
	path := sharePath(active.Name(), "projects")
	if ro, ok := readOnly(drivers[active.Name()], path); !ok || !ro {
		t.Fatalf("the stopped appliance's copy: want it fenced as the agent stopped, got exists=%v read-only=%v", ok, ro)
	}
	if err := drivers[active.Name()].SetReadOnly(t.Context(), path, false); err != nil {
		t.Fatal(err)
	}
	back := restart(t, active)
	if ro, ok := readOnly(drivers[active.Name()], path); !ok || !ro {
		t.Fatalf("restarted after a crash: want its copy read-only from the start, got exists=%v read-only=%v", ok, ro)
	}
	waitFailover(t, []*Node{back}, "projects", replica.Name(), 1)
	waitUntil(t, back.Name()+" to make its demoted copy read-only", func() (bool, string) {
		ro, ok := readOnly(drivers[active.Name()], path)
		return !ok || ro, fmt.Sprintf("exists=%v read-only=%v", ok, ro)
	})
	// Restarted, it replays the log: the old failover is not counted
	// again (a restart is not a failover), the epoch stays.
	wantMetric(t, back, `fleetctl_failovers_total{reason="unreachable",share="projects"} 0`)
	wantMetric(t, back, `fleetctl_share_epoch{share="projects"} 1`)
	// The fence it started with is dropped once it sees the epoch moved:
	// a demoted copy is not a fence.
	waitUntil(t, back.Name()+" to drop its start fence", func() (bool, string) {
		return len(back.Fenced()) == 0, fmt.Sprintf("fenced=%v", back.Fenced())
	})
}

func TestWitnessSelfFencing(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleStorage}
	nodes, drivers := witnessFleet(t, roles...)
	leader := readyLeader(t, nodes)
	rest := except(nodes, leader)
	x, y := rest[0], rest[1]
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", x.Name(), y.Name(), schema.FailoverAuto})
	waitRenewing(t, nodes, names(nodes)...)
	path := sharePath(x.Name(), "projects")
	if ro, ok := readOnly(drivers[x.Name()], path); !ok || ro {
		t.Fatalf("before: want %s writable, got exists=%v read-only=%v", path, ok, ro)
	}

	x.leaseBlocked.Store(true)
	blocked := time.Now()
	waitUntil(t, x.Name()+" to fence projects", func() (bool, string) {
		ro, _ := readOnly(drivers[x.Name()], path)
		return ro && x.Fenced()["projects"], fmt.Sprintf("read-only=%v fenced=%v", ro, x.Fenced())
	})
	took := time.Since(blocked)
	t.Logf("%s fenced %v after its renewals stopped (fence_after %v, failover_after %v)", x.Name(), took.Round(time.Millisecond), fastPolicy.fenceAfter, fastPolicy.failoverAfter)
	if lo := fastPolicy.fenceAfter - LeaseInterval; took < lo {
		t.Fatalf("fenced after %v: want no sooner than %v", took, lo)
	}
	if took >= fastPolicy.failoverAfter-LeaseInterval {
		t.Fatalf("fenced after %v: want it well before failover_after %v", took, fastPolicy.failoverAfter)
	}
	if _, ok := leader.FSM().State().Failover["projects"]; ok {
		t.Fatalf("the leader failed over before %s fenced", x.Name())
	}
	wantMetric(t, x, fmt.Sprintf(`fleetctl_fenced{appliance=%q} 1`, x.Name()))
	wantMetric(t, x, fmt.Sprintf(`fleetctl_fenced_shares{appliance=%q} 1`, x.Name()))
	// The appliance reports it (it still reaches the leader for that), and
	// the leader logs it.
	waitUntil(t, x.Name()+"'s reported status to say projects is fenced", func() (bool, string) {
		got := leader.FSM().State().Nodes[x.Name()].Fenced
		return slices.Equal(got, []string{"projects"}), fmt.Sprint(got)
	})
	waitUntil(t, "a fenced witness event after the lease was blocked", func() (bool, string) {
		found := findEvents(leader.FSM().State(), store.EventFenced, "projects")
		return len(found) > 0 && found[len(found)-1].At.After(blocked), fmt.Sprintf("%+v", found)
	})
	ws, err := clientFor(t, y).WitnessStatus(t.Context())
	if err != nil {
		t.Fatalf("witness status: %v", err)
	}
	if len(ws.Shares) != 1 || !ws.Shares[0].Fenced || !slices.Equal(ws.Shares[0].FencedOn, []string{x.Name()}) {
		t.Fatalf("witness status: want projects fenced on %s, got %+v", x.Name(), ws.Shares)
	}

	x.leaseBlocked.Store(false)
	unblocked := time.Now()
	waitUntil(t, x.Name()+" to unfence projects", func() (bool, string) {
		ro, _ := readOnly(drivers[x.Name()], path)
		return !ro && len(x.Fenced()) == 0, fmt.Sprintf("read-only=%v fenced=%v", ro, x.Fenced())
	})
	t.Logf("%s unfenced %v after renewals flowed again", x.Name(), time.Since(unblocked).Round(time.Millisecond))
	wantMetric(t, x, fmt.Sprintf(`fleetctl_fenced{appliance=%q} 0`, x.Name()))
	e := waitEvent(t, leader, store.EventUnfenced, "projects")
	if !strings.Contains(e.Detail, "writable again") {
		t.Fatalf("unfenced event: want it to say writable again, got %+v", e)
	}
	waitUntil(t, x.Name()+" to report no fenced shares", func() (bool, string) {
		got := leader.FSM().State().Nodes[x.Name()].Fenced
		return len(got) == 0, fmt.Sprint(got)
	})
	if fo, ok := leader.FSM().State().Failover["projects"]; ok {
		t.Fatalf("want no failover, got %+v", fo)
	}
}

func TestWitnessFencedShareStaysReadOnlyAfterFailover(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleStorage}
	nodes, drivers := witnessFleet(t, roles...)
	leader := readyLeader(t, nodes)
	rest := except(nodes, leader)
	x, y := rest[0], rest[1]
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", x.Name(), y.Name(), schema.FailoverAuto})
	waitRenewing(t, nodes, names(nodes)...)
	path := sharePath(x.Name(), "projects")

	x.leaseBlocked.Store(true)
	blocked := time.Now()
	waitUntil(t, x.Name()+" to fence projects", func() (bool, string) {
		ro, _ := readOnly(drivers[x.Name()], path)
		return ro, fmt.Sprintf("read-only=%v", ro)
	})
	fenced := time.Since(blocked)
	waitFailover(t, nodes, "projects", y.Name(), 1)
	failedOver := time.Since(blocked)
	t.Logf("fenced after %v, failed over after %v", fenced.Round(time.Millisecond), failedOver.Round(time.Millisecond))
	if fenced >= failedOver {
		t.Fatalf("the failover (%v) came before the fence (%v)", failedOver, fenced)
	}

	x.leaseBlocked.Store(false)
	waitUntil(t, x.Name()+" to stop counting projects as fenced", func() (bool, string) {
		return len(x.Fenced()) == 0, fmt.Sprint(x.Fenced())
	})
	// Never two writable copies: x's copy stays read-only (or is gone, once
	// the reconciler has made x the replica).
	if ro, ok := readOnly(drivers[x.Name()], path); ok && !ro {
		t.Fatalf("after the failover and the renewed lease: %s's %s is writable", x.Name(), path)
	}
	// The newest unfenced event says so. It is written after the failover
	// was seen: a loaded machine may have fenced and unfenced before the
	// test blocked the lease, and the leader writes that event a moment
	// later, which can be after the block but never after the failover
	// (it comes failover_after later).
	seen := blocked.Add(failedOver)
	var e store.WitnessEvent
	waitUntil(t, "an unfenced event after the failover", func() (bool, string) {
		found := findEvents(leader.FSM().State(), store.EventUnfenced, "projects")
		if len(found) == 0 {
			return false, "none"
		}
		e = found[len(found)-1]
		return e.At.After(seen), fmt.Sprintf("%+v", found)
	})
	if !strings.Contains(e.Detail, "stays read-only") {
		t.Fatalf("unfenced event after a failover: want it to say the copy stays read-only, got %+v", e)
	}
}

func TestWitnessFenceSurvivesRestart(t *testing.T) {
	t.Parallel()
	p := policy{failoverAfter: 12 * time.Second, fenceAfter: 3 * time.Second}
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleStorage}
	nodes, drivers := witnessFleet(t, roles...)
	leader := readyLeader(t, nodes)
	rest := except(nodes, leader)
	x, y := rest[0], rest[1]
	applyWitnessSpec(t, nodes, drivers, roles, p, testShare{"projects", x.Name(), y.Name(), schema.FailoverAuto})
	waitRenewing(t, nodes, names(nodes)...)
	path := sharePath(x.Name(), "projects")

	x.leaseBlocked.Store(true)
	waitUntil(t, x.Name()+" to fence projects", func() (bool, string) {
		ro, _ := readOnly(drivers[x.Name()], path)
		return ro && len(x.Fenced()) == 1, fmt.Sprintf("read-only=%v", ro)
	})
	// Stopped while fenced, the agent keeps the fence in its data dir.
	waitUntil(t, "the fence in the data dir", func() (bool, string) {
		_, err := os.Stat(filepath.Join(x.cfg.DataDir, fileFenced))
		return err == nil, fmt.Sprint(err)
	})
	stop(t, x)
	back := restart(t, x)
	if !back.Fenced()["projects"] {
		t.Fatalf("restarted while fenced: want projects fenced at start, got %v", back.Fenced())
	}
	waitUntil(t, back.Name()+" to lift the fence it had before the restart", func() (bool, string) {
		ro, _ := readOnly(drivers[x.Name()], path)
		return !ro && len(back.Fenced()) == 0, fmt.Sprintf("read-only=%v fenced=%v", ro, back.Fenced())
	})
	if _, err := os.Stat(filepath.Join(x.cfg.DataDir, fileFenced)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after the fence was lifted: want no %s, got %v", fileFenced, err)
	}
	if fo, ok := leader.FSM().State().Failover["projects"]; ok {
		t.Fatalf("want no failover, got %+v", fo)
	}
}

func TestWitnessDegradedAndRecovered(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleWitness}
	nodes, drivers := witnessFleet(t, roles...)
	leader := readyLeader(t, nodes)
	// Any round trip is longer than a microsecond.
	slow := policy{failoverAfter: 8 * time.Second, fenceAfter: 3 * time.Second, degraded: time.Microsecond}
	applyWitnessSpec(t, nodes, drivers, roles, slow, testShare{"projects", "n1", "n2", schema.FailoverAuto})
	for _, name := range []string{"n1", "n2"} {
		waitUntil(t, name+" degraded", func() (bool, string) {
			st := leader.FSM().State()
			return slices.ContainsFunc(findEvents(st, store.EventDegraded, ""), func(e store.WitnessEvent) bool { return e.Member == name }), fmt.Sprintf("%+v", st.WitnessLog)
		})
	}
	ws, err := clientFor(t, leader).WitnessStatus(t.Context())
	if err != nil {
		t.Fatalf("witness status: %v", err)
	}
	for _, m := range ws.Members[:2] {
		if !m.Degraded {
			t.Fatalf("witness status: want %s degraded, got %+v", m.Name, m)
		}
	}
	if evs := findEvents(leader.FSM().State(), store.EventDegraded, ""); len(evs) != 2 {
		t.Fatalf("want one degraded event per member, got %+v", evs)
	}

	yaml := witnessSpec(nodes, roles, fastPolicy, testShare{"projects", "n1", "n2", schema.FailoverAuto})
	if _, err := clientFor(t, leader).Apply(t.Context(), client.ApplyRequest{YAML: yaml}); err != nil {
		t.Fatalf("apply the default degraded_latency: %v", err)
	}
	for _, name := range []string{"n1", "n2"} {
		waitUntil(t, name+" recovered", func() (bool, string) {
			st := leader.FSM().State()
			return slices.ContainsFunc(findEvents(st, store.EventRecovered, ""), func(e store.WitnessEvent) bool { return e.Member == name }), fmt.Sprintf("%+v", st.WitnessLog)
		})
	}
}

// The edge of the credit: the leader answers renewals only after a check
// round the other voters confirmed (each notes its yes, in the leader's
// term), and when the leader, the active appliance, stops, the new leader
// gets the reports of the voters and credits the old leader from them,
// before its office, also at the tightest policy.
func TestWitnessNewLeaderCreditsOldFromReports(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleWitness}
	nodes, drivers := witnessFleet(t, roles...)
	leader := readyLeader(t, nodes)
	rest := except(nodes, leader)
	var replica *Node
	for _, n := range rest {
		if n.cfg.Driver != nil {
			replica = n
		}
	}
	if leader.cfg.Driver == nil {
		t.Skipf("the witness %s leads; the story needs a storage leader", leader.Name())
	}
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", leader.Name(), replica.Name(), schema.FailoverAuto})
	waitRenewing(t, nodes, leader.Name(), replica.Name())

	term := leader.raft.CurrentTerm()
	for _, n := range rest {
		waitUntil(t, n.Name()+" to confirm a check round of term "+fmt.Sprint(term), func() (bool, string) {
			n.acks.mu.Lock()
			defer n.acks.mu.Unlock()
			return n.acks.term == term && !n.acks.last.IsZero(), fmt.Sprintf("term %d, last %v", n.acks.term, n.acks.last)
		})
	}

	old := leader.Name()
	stop(t, leader)
	next := readyLeader(t, rest)
	var credit, since time.Time
	waitUntil(t, next.Name()+" to credit "+old+" from the voters' reports", func() (bool, string) {
		w := &next.wit
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := reportedBound(w.book.prior, w.book.voters, w.book.configIndex, w.book.reports, w.book.term)
		credit, since = w.book.credited[old], w.book.since
		return ok && !credit.IsZero(), fmt.Sprintf("voters %v, reports %v, credit %v", w.book.voters, w.book.reports, credit)
	})
	if !credit.Before(since) {
		t.Fatalf("credit %v: want before office %v", credit, since)
	}
	waitFailover(t, rest, "projects", replica.Name(), 1)
}

// A renewal waits for a check round that starts after it arrived: one
// that arrives while a round runs gets the next round's answer, and the
// renewals waiting together share one round. Once the agent stops, none
// runs and a renewal is refused at once.
func TestWitnessCheckRoundsCoalesce(t *testing.T) {
	a := &ackRounds{kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan int, 10)
	release := make(chan error)
	var rounds int
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.loop(ctx, func(context.Context) error {
			rounds++
			started <- rounds
			return <-release
		})
	}()
	first := make(chan error, 1)
	go func() { first <- a.wait(context.Background()) }()
	if r := <-started; r != 1 {
		t.Fatalf("want round 1 to start, got %d", r)
	}
	// Round 1 runs: these two arrive now and must wait for round 2.
	second := make(chan error, 2)
	for range 2 {
		go func() { second <- a.wait(context.Background()) }()
	}
	waitUntil(t, "the two renewals to join the next round", func() (bool, string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.next != nil && a.next.waiting == 2, fmt.Sprint(a.next)
	})
	release <- errNoQuorum
	if err := <-first; !errors.Is(err, errNoQuorum) {
		t.Fatalf("the renewal of round 1: want its answer, got %v", err)
	}
	if r := <-started; r != 2 {
		t.Fatalf("want round 2 to start, got %d", r)
	}
	release <- nil
	for range 2 {
		if err := <-second; err != nil {
			t.Fatalf("a renewal that arrived during round 1: want round 2's yes, got %v", err)
		}
	}
	cancel()
	<-done
	if rounds != 2 {
		t.Fatalf("rounds: want 2 for three renewals, got %d", rounds)
	}
	if err := a.wait(context.Background()); !errors.Is(err, errRoundsStopped) {
		t.Fatalf("a renewal after the agent stopped: want errRoundsStopped, got %v", err)
	}
}

// A renewal still waiting as the agent stops is refused.
func TestWitnessConfirmedRefusedWhenStopping(t *testing.T) {
	a := &ackRounds{kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.loop(ctx, func(context.Context) error { t.Error("no round may run"); return nil })
	}()
	a.mu.Lock()
	a.next = &ackRound{done: make(chan struct{})}
	r := a.next
	a.mu.Unlock()
	cancel()
	<-done
	<-r.done
	if !errors.Is(r.err, errRoundsStopped) {
		t.Fatalf("a renewal waiting as the agent stops: want errRoundsStopped, got %v", r.err)
	}
}

// An agent from before the check rounds answers 404 (its API has no such
// route): a rolling upgrade counts it as yes. Any other failure is no.
func TestOlderAgent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&client.APIError{Status: http.StatusNotFound, Code: client.CodeInternal, Message: "404 Not Found: 404 page not found"}, true},
		{fmt.Errorf("check round: %w", &client.APIError{Status: http.StatusNotFound}), true},
		{&client.APIError{Status: http.StatusServiceUnavailable, Code: client.CodeNoLeader}, false},
		{errors.New("connection refused"), false},
		{nil, false},
	} {
		if got := olderAgent(c.err); got != c.want {
			t.Errorf("olderAgent(%v): want %v, got %v", c.err, c.want, got)
		}
	}
}
