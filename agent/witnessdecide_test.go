package agent

import (
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// The decider's tests run decideWitness with a clock the test moves: no
// fleet, no sleeps. The node tests in witness_test.go prove the wiring.

// office is when the test leaders take office.
var office = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// decideSpec is a spec with the storage appliances nas1, nas2 and nas3,
// the witness appliance wit, the policy failover_after 30s, fence_after
// 15s, degraded_latency 250ms, and the shares, each replicated from its
// appliance to the to appliance.
func decideSpec(shares ...testShare) *schema.Spec {
	spec := &schema.Spec{
		Version: 1,
		Witness: schema.Witness{
			FailoverAfter:   schema.Duration(30 * time.Second),
			FenceAfter:      schema.Duration(15 * time.Second),
			DegradedLatency: schema.Duration(250 * time.Millisecond),
		},
	}
	for _, name := range []string{"nas1", "nas2", "nas3"} {
		spec.Appliances = append(spec.Appliances, schema.Appliance{Name: name, Role: schema.RoleStorage, Pools: []schema.Pool{{Name: "tank", Path: poolPath(name)}}})
	}
	spec.Appliances = append(spec.Appliances, schema.Appliance{Name: "wit", Role: schema.RoleWitness})
	for _, sh := range shares {
		spec.Shares = append(spec.Shares, schema.Share{
			Name: sh.name, Appliance: sh.on, Pool: "tank", Failover: sh.failover,
			Replication: &schema.Replication{To: schema.Target{Appliance: sh.to, Pool: "tank"}},
		})
	}
	return spec
}

// witnessSim drives decideWitness as witnessCheck does, with a clock the
// test moves: each decision's bookkeeping is noted, and its events are
// written to the state's log and recorded in the book at once. Failovers
// are not committed: a story that needs one sets State.Failover.
type witnessSim struct {
	st   *store.State
	book witnessBook
	now  time.Time
}

// newWitnessSim is a leader that took office at office with the state st.
func newWitnessSim(st *store.State) *witnessSim {
	return &witnessSim{st: st, book: newWitnessBook(office, st), now: office}
}

// at sets the clock to d after office.
func (s *witnessSim) at(d time.Duration) { s.now = office.Add(d) }

// renew counts a renewal with the round trip rtt from each appliance, now.
func (s *witnessSim) renew(rtt time.Duration, appliances ...string) {
	for _, a := range appliances {
		s.book.renew(a, rtt, s.now)
	}
}

// decide looks at the leases now, as the leader's tick does.
func (s *witnessSim) decide() witnessDecision {
	d := decideWitness(witnessInput{State: s.st, Book: s.book, Now: s.now})
	s.book.note(d, s.now)
	for _, e := range d.Events {
		s.st.WitnessLog = append(s.st.WitnessLog, e)
		s.book.record(e)
	}
	return d
}

// every renews the appliances each second from from to to (offsets from
// office) and decides after each renewal.
func (s *witnessSim) every(from, to time.Duration, appliances ...string) {
	for d := from; d <= to; d += LeaseInterval {
		s.at(d)
		s.renew(time.Millisecond, appliances...)
		s.decide()
	}
}

// lines renders events as "member event [share]: detail".
func lines(events []store.WitnessEvent) []string {
	var out []string
	for _, e := range events {
		l := e.Member + " " + e.Event
		if e.Share != "" {
			l += " " + e.Share
		}
		out = append(out, l+": "+e.Detail)
	}
	return out
}

func TestDecideWitness(t *testing.T) {
	auto := testShare{"projects", "nas1", "nas2", schema.FailoverAuto}
	manual := testShare{"projects", "nas1", "nas2", schema.FailoverManual}
	due := func(share, from, to string, epoch uint64, age string) []witnessFailover {
		return []witnessFailover{{Share: share, From: from, To: to, ExpectedEpoch: epoch, After: schema.Duration(30 * time.Second), Reason: from + " unreachable for " + age + " > failover_after 30s"}}
	}
	const ns = time.Nanosecond
	cases := []struct {
		name   string
		shares []testShare
		// setup is the state when the leader takes office.
		setup func(st *store.State)
		// story is what happens before the last look, at the sim's clock.
		story         func(s *witnessSim)
		want          []string
		wantFailovers []witnessFailover
	}{
		{
			name:   "everyone renews: nothing to write",
			shares: []testShare{auto},
			story: func(s *witnessSim) {
				s.every(time.Second, 20*time.Second, "nas1", "nas2", "nas3")
				s.at(20500 * time.Millisecond)
			},
		},
		{
			name:  "counted from office, still reachable at the window",
			story: func(s *witnessSim) { s.at(ReachableWindow) },
		},
		{
			name: "unreachable just past the window",
			story: func(s *witnessSim) {
				s.every(time.Second, time.Second, "nas2", "nas3")
				s.at(ReachableWindow + time.Millisecond)
			},
			want: []string{"nas1 unreachable: nas1 has not renewed its lease for 3s (> 3s)"},
		},
		{
			name: "unreachable is written once",
			story: func(s *witnessSim) {
				s.every(time.Second, 5*time.Second, "nas2", "nas3")
				s.at(5500 * time.Millisecond)
			},
		},
		{
			name: "reachable again on a received renewal",
			story: func(s *witnessSim) {
				s.every(time.Second, 5*time.Second, "nas2", "nas3")
				s.at(6 * time.Second)
				s.renew(time.Millisecond, "nas1", "nas2", "nas3")
			},
			want: []string{"nas1 reachable: nas1 renews its lease again"},
		},
		{
			name: "a new leader writes reachable only on a received renewal",
			setup: func(st *store.State) {
				st.WitnessLog = []store.WitnessEvent{{Member: "nas1", Event: store.EventUnreachable}}
			},
			story: func(s *witnessSim) { s.at(2 * time.Second); s.renew(time.Millisecond, "nas2", "nas3") },
		},
		{
			name: "degraded above degraded_latency",
			story: func(s *witnessSim) {
				s.at(time.Second)
				s.renew(300*time.Millisecond, "nas1")
				s.renew(time.Millisecond, "nas2", "nas3")
			},
			want: []string{"nas1 degraded: nas1's lease round trip took 300ms > degraded_latency 250ms"},
		},
		{
			name: "degraded is written once",
			story: func(s *witnessSim) {
				s.at(time.Second)
				s.renew(300*time.Millisecond, "nas1")
				s.decide()
				s.at(2 * time.Second)
				s.renew(400*time.Millisecond, "nas1")
			},
		},
		{
			name: "still degraded between recoverFraction and the limit",
			story: func(s *witnessSim) {
				s.at(time.Second)
				s.renew(300*time.Millisecond, "nas1")
				s.decide()
				s.at(2 * time.Second)
				s.renew(201*time.Millisecond, "nas1")
			},
		},
		{
			name: "recovered at recoverFraction of the limit",
			story: func(s *witnessSim) {
				s.at(time.Second)
				s.renew(300*time.Millisecond, "nas1")
				s.decide()
				s.at(2 * time.Second)
				s.renew(200*time.Millisecond, "nas1")
			},
			want: []string{"nas1 recovered: nas1's lease round trip is 200ms again (degraded_latency 250ms)"},
		},
		{
			name: "an unreachable member is not degraded",
			story: func(s *witnessSim) {
				s.at(500 * time.Millisecond)
				s.renew(300*time.Millisecond, "nas1")
				s.at(4 * time.Second)
				s.renew(time.Millisecond, "nas2", "nas3")
			},
			want: []string{"nas1 unreachable: nas1 has not renewed its lease for 3.5s (> 3s)"},
		},
		{
			name:   "failover not due exactly at failover_after",
			shares: []testShare{auto},
			story:  func(s *witnessSim) { s.every(time.Second, 30*time.Second, "nas2", "nas3") },
		},
		{
			name:          "failover due just past failover_after",
			shares:        []testShare{auto},
			story:         func(s *witnessSim) { s.every(time.Second, 30*time.Second, "nas2", "nas3"); s.at(30*time.Second + ns) },
			wantFailovers: due("projects", "nas1", "nas2", 0, "30s"),
		},
		{
			name:   "failover from the active appliance at the share's epoch",
			shares: []testShare{auto},
			setup: func(st *store.State) {
				st.Failover = map[string]store.FailoverState{"projects": {Active: "nas2", Epoch: 1}}
			},
			story: func(s *witnessSim) {
				s.every(time.Second, 35*time.Second, "nas1", "nas3")
			},
			wantFailovers: due("projects", "nas2", "nas1", 1, "35s"),
		},
		{
			name:   "manual: one event, no failover",
			shares: []testShare{manual},
			story:  func(s *witnessSim) { s.every(time.Second, 30*time.Second, "nas2", "nas3"); s.at(30*time.Second + ns) },
			want:   []string{"nas1 failover needed (manual) projects: nas1 unreachable for 30s > failover_after 30s; projects has failover: manual: run fleetctl failover projects --to nas2"},
		},
		{
			name:   "manual: once per outage",
			shares: []testShare{manual},
			story:  func(s *witnessSim) { s.every(time.Second, 40*time.Second, "nas2", "nas3") },
		},
		{
			name:   "manual: again after the appliance was back",
			shares: []testShare{manual},
			story: func(s *witnessSim) {
				s.every(time.Second, 40*time.Second, "nas2", "nas3")
				s.every(41*time.Second, 41*time.Second, "nas1", "nas2", "nas3")
				s.every(42*time.Second, 71*time.Second, "nas2", "nas3")
				s.at(71*time.Second + ns)
			},
			want: []string{"nas1 failover needed (manual) projects: nas1 unreachable for 30s > failover_after 30s; projects has failover: manual: run fleetctl failover projects --to nas2"},
		},
		{
			name:   "blocked: the replica is unreachable too",
			shares: []testShare{auto},
			story:  func(s *witnessSim) { s.every(time.Second, 30*time.Second, "nas3"); s.at(30*time.Second + ns) },
			want:   []string{"nas1 failover blocked projects: nas1 unreachable for 30s > failover_after 30s, but the replica nas2 is unreachable too; waiting for either"},
		},
		{
			name:   "blocked: once per outage",
			shares: []testShare{auto},
			story:  func(s *witnessSim) { s.every(time.Second, 40*time.Second, "nas3") },
		},
		{
			name:   "blocked: fails over once the replica renews",
			shares: []testShare{auto},
			story: func(s *witnessSim) {
				s.every(time.Second, 40*time.Second, "nas3")
				s.at(41 * time.Second)
				s.renew(time.Millisecond, "nas2", "nas3")
			},
			want:          []string{"nas2 reachable: nas2 renews its lease again"},
			wantFailovers: due("projects", "nas1", "nas2", 0, "41s"),
		},
		{
			name:   "blocked: a replica first named now has not renewed yet",
			shares: []testShare{auto},
			setup: func(st *store.State) {
				st.Spec.Appliances = slices.DeleteFunc(st.Spec.Appliances, func(a schema.Appliance) bool { return a.Name == "nas3" })
			},
			story: func(s *witnessSim) {
				s.every(time.Second, 30*time.Second, "nas2")
				s.at(30*time.Second + ns)
				s.st.Spec = decideSpec(testShare{"projects", "nas1", "nas3", schema.FailoverAuto})
			},
			want: []string{"nas1 failover blocked projects: nas1 unreachable for 30s > failover_after 30s, but the replica nas3 is unreachable too; waiting for either"},
		},
		{
			name:   "a new leader counts everyone renewed at office",
			shares: []testShare{auto},
			setup: func(st *store.State) {
				st.WitnessLog = []store.WitnessEvent{{Member: "nas1", Event: store.EventUnreachable, Detail: "written by the old leader"}}
			},
			story: func(s *witnessSim) { s.every(time.Second, 30*time.Second, "nas2", "nas3") },
		},
		{
			name:   "a new leader fails over once failover_after passed since office",
			shares: []testShare{auto},
			setup: func(st *store.State) {
				st.WitnessLog = []store.WitnessEvent{{Member: "nas1", Event: store.EventUnreachable, Detail: "written by the old leader"}}
			},
			story:         func(s *witnessSim) { s.every(time.Second, 30*time.Second, "nas2", "nas3"); s.at(30*time.Second + ns) },
			wantFailovers: due("projects", "nas1", "nas2", 0, "30s"),
		},
		{
			name:   "an appliance first named later is counted from first sight",
			shares: []testShare{auto},
			setup: func(st *store.State) {
				st.Spec.Appliances = slices.DeleteFunc(st.Spec.Appliances, func(a schema.Appliance) bool { return a.Name == "nas3" })
			},
			story: func(s *witnessSim) {
				s.every(time.Second, 19*time.Second, "nas1", "nas2")
				spec := decideSpec(auto, testShare{"media", "nas3", "nas1", schema.FailoverAuto})
				s.st.Spec = spec
				s.every(20*time.Second, 50*time.Second, "nas1", "nas2")
			},
		},
		{
			name:   "an appliance first named later fails over failover_after after first sight",
			shares: []testShare{auto},
			setup: func(st *store.State) {
				st.Spec.Appliances = slices.DeleteFunc(st.Spec.Appliances, func(a schema.Appliance) bool { return a.Name == "nas3" })
			},
			story: func(s *witnessSim) {
				s.every(time.Second, 19*time.Second, "nas1", "nas2")
				s.st.Spec = decideSpec(auto, testShare{"media", "nas3", "nas1", schema.FailoverAuto})
				s.every(20*time.Second, 50*time.Second, "nas1", "nas2")
				s.at(50*time.Second + ns)
			},
			wantFailovers: due("media", "nas3", "nas1", 0, "30s"),
		},
		{
			name:   "fenced: an appliance reports a share read-only",
			shares: []testShare{auto},
			story: func(s *witnessSim) {
				s.every(time.Second, 2*time.Second, "nas1", "nas2", "nas3")
				s.st.Nodes = map[string]store.NodeStatus{"nas1": {Fenced: []string{"projects"}}}
			},
			want: []string{"nas1 fenced projects: nas1 made projects read-only: its lease lapsed (fence_after 15s)"},
		},
		{
			name:   "fenced: a new leader starts from the reported fences",
			shares: []testShare{auto},
			setup:  func(st *store.State) { st.Nodes = map[string]store.NodeStatus{"nas1": {Fenced: []string{"projects"}}} },
			story:  func(s *witnessSim) { s.every(time.Second, 2*time.Second, "nas1", "nas2", "nas3") },
		},
		{
			name:   "unfenced: writable again at the same epoch",
			shares: []testShare{auto},
			setup:  func(st *store.State) { st.Nodes = map[string]store.NodeStatus{"nas1": {Fenced: []string{"projects"}}} },
			story: func(s *witnessSim) {
				s.every(time.Second, 2*time.Second, "nas1", "nas2", "nas3")
				s.st.Nodes = map[string]store.NodeStatus{"nas1": {}}
			},
			want: []string{"nas1 unfenced projects: nas1 made projects writable again: its lease is renewed and the share's epoch did not move"},
		},
		{
			name:   "unfenced: the share moved while the appliance was fenced",
			shares: []testShare{auto},
			setup:  func(st *store.State) { st.Nodes = map[string]store.NodeStatus{"nas1": {Fenced: []string{"projects"}}} },
			story: func(s *witnessSim) {
				s.every(time.Second, 2*time.Second, "nas1", "nas2", "nas3")
				s.st.Failover = map[string]store.FailoverState{"projects": {Active: "nas2", Epoch: 1}}
				s.st.Nodes = map[string]store.NodeStatus{"nas1": {}}
			},
			want: []string{"nas1 unfenced projects: projects moved to nas2 (epoch 1) while nas1 was fenced; nas1's copy stays read-only"},
		},
		{
			name:   "unfenced: the appliance no longer reports at all",
			shares: []testShare{auto},
			setup:  func(st *store.State) { st.Nodes = map[string]store.NodeStatus{"nas1": {Fenced: []string{"projects"}}} },
			story: func(s *witnessSim) {
				s.every(time.Second, 2*time.Second, "nas1", "nas2", "nas3")
				s.st.Nodes = nil
			},
			want: []string{"nas1 unfenced projects: nas1 made projects writable again: its lease is renewed and the share's epoch did not move"},
		},
		{
			name:   "an outage already reported is not repeated after a leader change",
			shares: []testShare{manual},
			setup: func(st *store.State) {
				st.WitnessLog = []store.WitnessEvent{
					{Member: "nas1", Event: store.EventUnreachable},
					{Member: "nas1", Share: "projects", Event: store.EventFailoverManual},
				}
			},
			story: func(s *witnessSim) { s.every(time.Second, 40*time.Second, "nas2", "nas3") },
		},
		{
			name:   "a blocked failover already reported is not repeated after a leader change",
			shares: []testShare{auto},
			setup: func(st *store.State) {
				st.WitnessLog = []store.WitnessEvent{
					{Member: "nas1", Event: store.EventUnreachable},
					{Member: "nas2", Event: store.EventUnreachable},
					{Member: "nas1", Share: "projects", Event: store.EventFailoverBlocked},
				}
			},
			story: func(s *witnessSim) { s.every(time.Second, 40*time.Second, "nas3") },
		},
		{
			name:   "an outage is reported again by a new leader when the appliance was back since",
			shares: []testShare{manual},
			setup: func(st *store.State) {
				st.WitnessLog = []store.WitnessEvent{
					{Member: "nas1", Event: store.EventUnreachable},
					{Member: "nas1", Share: "projects", Event: store.EventFailoverManual},
					{Member: "nas1", Event: store.EventReachable},
				}
			},
			story: func(s *witnessSim) { s.every(time.Second, 30*time.Second, "nas2", "nas3"); s.at(30*time.Second + ns) },
			want:  []string{"nas1 failover needed (manual) projects: nas1 unreachable for 30s > failover_after 30s; projects has failover: manual: run fleetctl failover projects --to nas2"},
		},
		{
			name: "a new leader does not repeat degraded",
			setup: func(st *store.State) {
				st.WitnessLog = []store.WitnessEvent{{Member: "nas1", Event: store.EventDegraded}}
			},
			story: func(s *witnessSim) {
				s.at(time.Second)
				s.renew(300*time.Millisecond, "nas1")
				s.renew(time.Millisecond, "nas2", "nas3")
				s.decide()
				s.at(2 * time.Second)
				s.renew(200*time.Millisecond, "nas1")
			},
			want: []string{"nas1 recovered: nas1's lease round trip is 200ms again (degraded_latency 250ms)"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &store.State{Spec: decideSpec(c.shares...)}
			if c.setup != nil {
				c.setup(st)
			}
			s := newWitnessSim(st)
			if c.story != nil {
				c.story(s)
			}
			d := s.decide()
			if got := lines(d.Events); !slices.Equal(got, c.want) {
				t.Fatalf("events at %v after office:\nwant %q\ngot  %q", s.now.Sub(office), c.want, got)
			}
			if !reflect.DeepEqual(d.Failovers, c.wantFailovers) {
				t.Fatalf("failovers at %v after office:\nwant %+v\ngot  %+v", s.now.Sub(office), c.wantFailovers, d.Failovers)
			}
			for _, e := range d.Events {
				if !e.At.Equal(s.now) || e.At.Location() != time.UTC {
					t.Fatalf("event time: want %v in UTC, got %v", s.now, e.At)
				}
			}
		})
	}
}

// cloneBook copies every map of b, so a test can tell whether b changed.
func cloneBook(b witnessBook) witnessBook {
	c := b
	c.renewals = maps.Clone(b.renewals)
	c.seen = maps.Clone(b.seen)
	c.unreachable = maps.Clone(b.unreachable)
	c.degraded = maps.Clone(b.degraded)
	c.manualLogged = maps.Clone(b.manualLogged)
	c.blockedLogged = maps.Clone(b.blockedLogged)
	c.fenced = map[string]map[string]bool{}
	for k, v := range b.fenced {
		c.fenced[k] = maps.Clone(v)
	}
	return c
}

// The decider is pure: the same input gives the same decision, and the
// book it reads is left as it was; the node notes what it decided.
func TestDecideWitnessIsPure(t *testing.T) {
	st := &store.State{Spec: decideSpec(testShare{"projects", "nas1", "nas2", schema.FailoverAuto}, testShare{"media", "nas2", "nas3", schema.FailoverManual})}
	b := newWitnessBook(office, st)
	st.Nodes = map[string]store.NodeStatus{"nas3": {Fenced: []string{"media"}}}
	b.renew("nas2", 300*time.Millisecond, office.Add(30*time.Second))
	in := witnessInput{State: st, Book: b, Now: office.Add(31 * time.Second)}
	before := cloneBook(b)

	d := decideWitness(in)
	if !reflect.DeepEqual(b, before) {
		t.Fatalf("decideWitness changed the book:\nwant %+v\ngot  %+v", before, b)
	}
	if again := decideWitness(in); !reflect.DeepEqual(again, d) {
		t.Fatalf("the same input decided twice:\nwant %+v\ngot  %+v", d, again)
	}
	want := []string{
		"nas1 unreachable: nas1 has not renewed its lease for 31s (> 3s)",
		"nas2 degraded: nas2's lease round trip took 300ms > degraded_latency 250ms",
		"nas3 unreachable: nas3 has not renewed its lease for 31s (> 3s)",
		"nas3 fenced media: nas3 made media read-only: its lease lapsed (fence_after 15s)",
	}
	if got := lines(d.Events); !slices.Equal(got, want) {
		t.Fatalf("events:\nwant %q\ngot  %q", want, got)
	}
	if d.Seen != nil {
		t.Fatalf("first sights: want none (the spec named everyone at office), got %v", d.Seen)
	}
	if len(d.Failovers) != 1 || d.Failovers[0].Share != "projects" {
		t.Fatalf("failovers: want projects, got %+v", d.Failovers)
	}

	// An appliance named later is seen first by a decision; once the node
	// has noted it, it counts from then and is named first no more.
	st.Spec.Appliances = append(st.Spec.Appliances, schema.Appliance{Name: "nas4", Role: schema.RoleStorage})
	d = decideWitness(in)
	if want := []string{"nas4"}; !slices.Equal(d.Seen, want) {
		t.Fatalf("first sights: want %v, got %v", want, d.Seen)
	}
	b.note(d, in.Now)
	if last, renewed := b.lastRenewal("nas4"); !last.Equal(in.Now) || renewed {
		t.Fatalf("nas4 after note: want counted from %v, not received; got %v, %v", in.Now, last, renewed)
	}
	if got := decideWitness(in); got.Seen != nil {
		t.Fatalf("after note: want no first sights, got %v", got.Seen)
	}
}

// A failover decided is confirmed under the lock just before it is
// committed: a renewal counted since the decision cancels it.
func TestWitnessFailoverConfirm(t *testing.T) {
	st := &store.State{Spec: decideSpec(testShare{"projects", "nas1", "nas2", schema.FailoverAuto})}
	b := newWitnessBook(office, st)
	b.renew("nas2", time.Millisecond, office.Add(30*time.Second))
	now := office.Add(30*time.Second + time.Nanosecond)
	d := decideWitness(witnessInput{State: st, Book: b, Now: now})
	if len(d.Failovers) != 1 {
		t.Fatalf("want projects due, got %+v", d.Failovers)
	}
	f := d.Failovers[0]

	later := now.Add(2 * time.Second)
	cmd, ok := f.confirm(&b, later)
	want := store.FailoverShare{Share: "projects", From: "nas1", To: "nas2", ExpectedEpoch: 0, Reason: "nas1 unreachable for 32s > failover_after 30s", At: later}
	if !ok || cmd != want {
		t.Fatalf("confirm with no renewal since: want %+v, got %+v (%v)", want, cmd, ok)
	}

	b.renew("nas1", 0, now.Add(time.Second))
	if cmd, ok := f.confirm(&b, later); ok {
		t.Fatalf("confirm after nas1 renewed: want cancelled, got %+v", cmd)
	}
}

// The leader takes renewals only while it leads; a renewal without a
// measured round trip keeps the last one known.
func TestWitnessRenewOnlyWhileLeading(t *testing.T) {
	var w witness
	st := &store.State{Spec: decideSpec()}
	w.startTerm(office, st, priorLeader{}, leadTerm{})
	applied := func() uint64 { return 7 }
	if idx, ok := w.renew("nas1", 3*time.Millisecond, office.Add(time.Second), applied); !ok || idx != 7 {
		t.Fatalf("renew while leading: want index 7, got %d (%v)", idx, ok)
	}
	w.renew("nas1", 0, office.Add(2*time.Second), applied)
	if got, want := w.book.renewals["nas1"], (renewal{at: office.Add(2 * time.Second), rtt: 3 * time.Millisecond}); got != want {
		t.Fatalf("a renewal without a round trip: want %+v, got %+v", want, got)
	}
	w.endTerm()
	if _, ok := w.renew("nas1", 0, office.Add(3*time.Second), applied); ok {
		t.Fatalf("renew after the term ended: want refused")
	}
	w.startTerm(office.Add(time.Minute), st, priorLeader{}, leadTerm{})
	if last, renewed := w.book.lastRenewal("nas1"); !last.Equal(office.Add(time.Minute)) || renewed {
		t.Fatalf("next term: want nas1 counted from office at %v, not received; got %v, %v", office.Add(time.Minute), last, renewed)
	}
	if w.term != 2 {
		t.Fatalf("terms led: want 2, got %d", w.term)
	}
}

// A new leader counts the leader it followed before, when that is a
// storage appliance, from when it last heard from it: the failover of a
// share whose active appliance was the old leader comes failover_after
// after it went silent, not after the election. The credit never goes
// below office + fence_after + FenceMargin − failover_after (here 30s,
// 15s and 7.5s: office − 7.5s); a policy at the minimum margin, a
// witness and an appliance outside the spec get none.
func TestWitnessCreditsPriorLeader(t *testing.T) {
	auto := testShare{"projects", "nas1", "nas2", schema.FailoverAuto}
	for _, c := range []struct {
		name    string
		prior   priorLeader
		quiet   time.Duration // still no failover at office+quiet
		failing time.Duration // the failover is due at office+failing
		tight   bool          // failover_after 20s, fence_after 15s: the minimum margin
	}{
		{"the old leader, silent 2s before office", priorLeader{"nas1", office.Add(-2 * time.Second), 0}, 27900 * time.Millisecond, 28100 * time.Millisecond, false},
		{"a stale contact is floored", priorLeader{"nas1", office.Add(-20 * time.Second), 0}, 22400 * time.Millisecond, 22600 * time.Millisecond, false},
		{"no credit at the minimum margin", priorLeader{"nas1", office.Add(-2 * time.Second), 0}, 19900 * time.Millisecond, 20100 * time.Millisecond, true},
		{"a witness gets no credit", priorLeader{"wit", office.Add(-2 * time.Second), 0}, 29900 * time.Millisecond, 30100 * time.Millisecond, false},
		{"nor does a stranger", priorLeader{"ghost", office.Add(-2 * time.Second), 0}, 29900 * time.Millisecond, 30100 * time.Millisecond, false},
		{"another appliance than the active one", priorLeader{"nas3", office.Add(-2 * time.Second), 0}, 29900 * time.Millisecond, 30100 * time.Millisecond, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &store.State{Spec: decideSpec(auto), Generation: 1}
			if c.tight {
				st.Spec.Witness.FailoverAfter = schema.Duration(20 * time.Second) // fence_after 15s: exactly the minimum margin, 5s
			}
			s := newWitnessSim(st)
			s.book.creditPrior(c.prior, st.Spec, office)
			s.every(time.Second, c.quiet, "nas2", "nas3")
			s.at(c.quiet)
			if d := s.decide(); len(d.Failovers) != 0 {
				t.Fatalf("at office+%v: failover %+v, want none yet", c.quiet, d.Failovers)
			}
			s.renew(time.Millisecond, "nas2", "nas3")
			s.at(c.failing)
			d := s.decide()
			if len(d.Failovers) != 1 || d.Failovers[0].From != "nas1" {
				t.Fatalf("at office+%v: failovers %+v, want projects from nas1", c.failing, d.Failovers)
			}
		})
	}
}

// A voter's report is an age at sending; the leader turns it into a time
// of its own clock, receipt − age, never earlier than the truth: the
// report was sent before it was received. A negative age counts as 0.
func TestReportedContact(t *testing.T) {
	for _, c := range []struct {
		receipt time.Time
		age     time.Duration
		want    time.Time
	}{
		{office, 1500 * time.Millisecond, office.Add(-1500 * time.Millisecond)},
		{office, 0, office},
		{office, -time.Second, office}, // a garbled age never moves it later than receipt
	} {
		if got := reportedContact(c.receipt, c.age); !got.Equal(c.want) {
			t.Errorf("reportedContact(%v, %v): want %v, got %v", c.receipt, c.age, c.want, got)
		}
	}
	// The truth: a voter last confirmed at c, sent its report 300ms later
	// (age 300ms), and the report took 40ms: the leader reads c + 40ms.
	c := office.Add(-2 * time.Second)
	sent := c.Add(300 * time.Millisecond)
	received := sent.Add(40 * time.Millisecond)
	if got := reportedContact(received, sent.Sub(c)); got.Before(c) {
		t.Fatalf("reportedContact: %v is before the voter's contact %v", got, c)
	}
}

// The bound B needs reports, in this leader's term, from a majority of
// all the voters that are not the old leader; it is the latest of them.
func TestReportedBound(t *testing.T) {
	const term = 7
	voters := []string{"nas1", "nas2", "wit"}
	five := []string{"nas1", "nas2", "nas3", "wit", "nas4"}
	at := func(d time.Duration) time.Time { return office.Add(d) }
	for _, c := range []struct {
		name    string
		prior   string
		voters  []string
		reports map[string]priorReport
		want    time.Time
		ok      bool
	}{
		{"both others reported", "nas1", voters, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, 0}, "wit": {term, at(-2 * time.Second), term - 1, 0}}, at(-2 * time.Second), true},
		{"only one of two others: no majority", "nas1", voters, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, 0}}, time.Time{}, false},
		{"the old leader's own report does not count", "nas1", voters, map[string]priorReport{"nas1": {term, at(-9 * time.Second), term - 1, 0}, "nas2": {term, at(-3 * time.Second), term - 1, 0}}, time.Time{}, false},
		{"a report of an earlier term does not count", "nas1", voters, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, 0}, "wit": {term - 1, at(-5 * time.Second), term - 2, 0}}, time.Time{}, false},
		{"a non-voter's report does not count", "nas1", voters, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, 0}, "nas3": {term, at(-5 * time.Second), term - 1, 0}}, time.Time{}, false},
		{"an old leader that is not a voter gets none", "nas9", voters, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, 0}, "wit": {term, at(-2 * time.Second), term - 1, 0}}, time.Time{}, false},
		{"five voters: three of the four others", "nas1", five, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, 0}, "wit": {term, at(-2 * time.Second), term - 1, 0}, "nas4": {term, at(-1 * time.Second), term - 1, 0}}, at(-time.Second), true},
		{"five voters: two of the four others are not enough", "nas1", five, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, 0}, "wit": {term, at(-2 * time.Second), term - 1, 0}}, time.Time{}, false},
	} {
		got, ok := reportedBound(priorLeader{name: c.prior, term: term - 1}, c.voters, 0, c.reports, term)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("%s: want %v (%v), got %v (%v)", c.name, c.want, c.ok, got, ok)
		}
	}
}

// With the reports of a majority of the other voters, the old leader is
// credited from their bound B with no floor, at the tightest policy too
// (8s / fence 3s, where the office bound gives no credit at all): the
// failover comes at B + failover_after. Without a majority it counts from
// office; a later report moves the credit earlier, never later; reports
// of another term are ignored.
func TestWitnessCreditsPriorLeaderFromReports(t *testing.T) {
	auto := testShare{"projects", "nas1", "nas2", schema.FailoverAuto}
	const term = 4
	voters := []string{"nas1", "nas2", "wit"}
	newSim := func() *witnessSim {
		st := &store.State{Spec: decideSpec(auto), Generation: 1}
		st.Spec.Witness.FailoverAfter = schema.Duration(8 * time.Second)
		st.Spec.Witness.FenceAfter = schema.Duration(3 * time.Second)
		s := newWitnessSim(st)
		s.book.term, s.book.voters = term, voters
		return s
	}
	// due says whether projects fails over at office+d (nas2 and nas3
	// renewing all along).
	due := func(s *witnessSim, d time.Duration) bool {
		s.at(d)
		s.renew(time.Millisecond, "nas2", "nas3")
		return len(s.decide().Failovers) == 1
	}
	prior := priorLeader{"nas1", office.Add(-1500 * time.Millisecond), term - 1}

	t.Run("a majority reported: B + failover_after", func(t *testing.T) {
		s := newSim()
		s.book.addReport("nas2", priorReport{term, office.Add(-1800 * time.Millisecond), term - 1, 0}, s.st.Spec) // before office: the leader's own
		s.book.creditPrior(prior, s.st.Spec, office)
		s.book.addReport("wit", priorReport{term, office.Add(-1700 * time.Millisecond), term - 1, 0}, s.st.Spec)
		if due(s, 6200*time.Millisecond) {
			t.Fatalf("failover at office+6.2s, B+7.9s: want none yet")
		}
		if !due(s, 6400*time.Millisecond) {
			t.Fatalf("no failover at office+6.4s, B+8.1s (B = office−1.7s)")
		}
	})
	t.Run("no majority: office + failover_after", func(t *testing.T) {
		s := newSim()
		s.book.creditPrior(prior, s.st.Spec, office)
		s.book.addReport("wit", priorReport{term, office.Add(-1700 * time.Millisecond), term - 1, 0}, s.st.Spec)
		s.book.addReport("nas2", priorReport{term - 1, office.Add(-1800 * time.Millisecond), term - 2, 0}, s.st.Spec) // of the term before
		if due(s, 7900*time.Millisecond) {
			t.Fatalf("failover at office+7.9s without a majority's reports: want none")
		}
		if !due(s, 8100*time.Millisecond) {
			t.Fatalf("no failover at office+8.1s")
		}
	})
	t.Run("B is never later than office", func(t *testing.T) {
		s := newSim()
		s.book.creditPrior(prior, s.st.Spec, office)
		s.book.addReport("nas2", priorReport{term, office.Add(time.Second), term - 1, 0}, s.st.Spec)
		s.book.addReport("wit", priorReport{term, office.Add(time.Second), term - 1, 0}, s.st.Spec)
		if _, ok := s.book.credited["nas1"]; ok {
			t.Fatalf("credited from a bound after office: %v", s.book.credited["nas1"])
		}
		if !due(s, 8100*time.Millisecond) {
			t.Fatalf("no failover at office+8.1s")
		}
	})
	t.Run("a voter's earliest report counts, the credit only moves earlier", func(t *testing.T) {
		s := newSim()
		s.book.creditPrior(prior, s.st.Spec, office)
		s.book.addReport("nas2", priorReport{term, office.Add(-1 * time.Second), term - 1, 0}, s.st.Spec)
		s.book.addReport("wit", priorReport{term, office.Add(-1 * time.Second), term - 1, 0}, s.st.Spec)
		s.book.addReport("wit", priorReport{term, office.Add(-500 * time.Millisecond), term - 1, 0}, s.st.Spec) // a later, looser copy
		if got, want := s.book.credited["nas1"], office.Add(-time.Second); !got.Equal(want) {
			t.Fatalf("credit: want %v, got %v", want, got)
		}
	})
	t.Run("a witness as the old leader gets none", func(t *testing.T) {
		s := newSim()
		s.book.voters = []string{"nas2", "nas3", "wit"}
		s.book.addReport("nas2", priorReport{term, office.Add(-2 * time.Second), term - 1, 0}, s.st.Spec)
		s.book.addReport("nas3", priorReport{term, office.Add(-2 * time.Second), term - 1, 0}, s.st.Spec)
		s.book.creditPrior(priorLeader{"wit", office.Add(-2 * time.Second), term - 1}, s.st.Spec, office)
		if len(s.book.credited) != 0 {
			t.Fatalf("credited a witness: %v", s.book.credited)
		}
	})
}

// The bound needs evidence that the leader of the term before ran check
// rounds under this configuration (or a newer one) and that no leader
// came between: otherwise an old-version leader (a rolling upgrade), two
// voter changes just before it died, or a lost election could leave a
// renewal it answered later than every report (the review of 2026-11-30:
// a leader without rounds, voters reporting their starts, was failed over
// at once while its copy was still writable).
func TestReportedBoundNeedsEvidence(t *testing.T) {
	const term, cfg = 7, 40
	voters := []string{"nas1", "nas2", "wit"}
	at := func(d time.Duration) time.Time { return office.Add(d) }
	prior := priorLeader{name: "nas1", term: term - 1}
	for _, c := range []struct {
		name    string
		prior   priorLeader
		reports map[string]priorReport
		ok      bool
	}{
		{"both confirmed the term before under this configuration", prior, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, cfg}, "wit": {term, at(-2 * time.Second), term - 1, cfg}}, true},
		{"one confirmed it, one reports its start", prior, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, cfg}, "wit": {term, at(-10 * time.Minute), 0, 0}}, true},
		{"a newer configuration (the one change the old leader had not committed)", prior, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, cfg + 1}, "wit": {term, at(-2 * time.Second), 0, 0}}, true},
		{"every report is a start: the old leader ran no rounds", prior, map[string]priorReport{"nas2": {term, at(-10 * time.Minute), 0, 0}, "wit": {term, at(-10 * time.Minute), 0, 0}}, false},
		{"yeses of an earlier leader only", prior, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 2, cfg}, "wit": {term, at(-2 * time.Second), term - 2, cfg}}, false},
		{"the old leader's last rounds were under an earlier configuration", prior, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, cfg - 1}, "wit": {term, at(-2 * time.Second), term - 1, cfg - 1}}, false},
		{"an election came between", priorLeader{name: "nas1", term: term - 2}, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 2, cfg}, "wit": {term, at(-2 * time.Second), term - 2, cfg}}, false},
		{"the old leader's term is not known", priorLeader{name: "nas1"}, map[string]priorReport{"nas2": {term, at(-3 * time.Second), term - 1, cfg}, "wit": {term, at(-2 * time.Second), term - 1, cfg}}, false},
	} {
		if _, ok := reportedBound(c.prior, voters, cfg, c.reports, term); ok != c.ok {
			t.Errorf("%s: want a bound %v, got %v", c.name, c.ok, ok)
		}
	}
}

// A voter says yes to a round only in its current term; its report in a
// term is the newest yes of an earlier term, or its start when later, and
// only while it is in that term, so no yes of an earlier term can follow.
func TestAckBook(t *testing.T) {
	current := uint64(3)
	term := func() uint64 { return current }
	a := ackBook{since: office}
	at := func(d time.Duration) time.Time { return office.Add(d) }
	if a.ack(2, 0, term, at(time.Second)) {
		t.Fatalf("yes to a round of term 2 in term 3")
	}
	if !a.ack(3, 0, term, at(2*time.Second)) || !a.ack(3, 0, term, at(3*time.Second)) {
		t.Fatalf("no yes to a round of the current term")
	}
	if c, ok := a.contactBefore(3, term); !ok || !c.at.Equal(office) {
		t.Fatalf("report in term 3: want the start %v, got %v (%v)", office, c, ok)
	}
	current = 5
	if a.ack(3, 0, term, at(4*time.Second)) {
		t.Fatalf("yes to a round of term 3 in term 5")
	}
	if _, ok := a.contactBefore(4, term); ok {
		t.Fatalf("report for term 4 while in term 5")
	}
	if c, ok := a.contactBefore(5, term); !ok || !c.at.Equal(at(3*time.Second)) {
		t.Fatalf("report in term 5: want the last yes of term 3 at %v, got %v (%v)", at(3*time.Second), c, ok)
	}
	a.ack(5, 0, term, at(6*time.Second))
	if c, ok := a.contactBefore(5, term); !ok || !c.at.Equal(at(3*time.Second)) {
		t.Fatalf("report in term 5 after a yes in term 5: want still %v, got %v (%v)", at(3*time.Second), c, ok)
	}
	current = 6
	if c, ok := a.contactBefore(6, term); !ok || !c.at.Equal(at(6*time.Second)) {
		t.Fatalf("report in term 6: want %v, got %v (%v)", at(6*time.Second), c, ok)
	}
	// The report names the term of that yes and the newest configuration
	// confirmed in it.
	current = 9
	a.ack(9, 12, term, at(7*time.Second))
	a.ack(9, 11, term, at(8*time.Second))
	current = 10
	if y, ok := a.contactBefore(10, term); !ok || y.term != 9 || y.cfg != 12 || !y.at.Equal(at(8*time.Second)) {
		t.Fatalf("report in term 10: want the yes of term 9 at %v, configuration 12; got %+v (%v)", at(8*time.Second), y, ok)
	}
	late := ackBook{since: at(time.Minute)}
	current = 7
	late.ack(7, 0, term, at(time.Second))
	current = 8
	if c, _ := late.contactBefore(8, term); !c.at.Equal(at(time.Minute)) || c.term != 0 {
		t.Fatalf("a start after the yeses: want the start, got %v", c)
	}
}
