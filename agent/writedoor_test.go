package agent

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/fleetctl/fleetctl/agent/fence"
	"github.com/fleetctl/fleetctl/schema"
)

// recGuard records what the node tells its guard; Announce fails while
// fail is set.
type recGuard struct {
	mu        sync.Mutex
	beats     []fence.Heartbeat
	announced []fence.Heartbeat
	fail      error
}

func (g *recGuard) Beat(h fence.Heartbeat) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.beats = append(g.beats, h)
}

func (g *recGuard) Announce(h fence.Heartbeat) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return g.fail
	}
	g.announced = append(g.announced, h)
	return nil
}

func (g *recGuard) lastAnnounced() (fence.Heartbeat, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.announced) == 0 {
		return fence.Heartbeat{}, 0
	}
	return g.announced[len(g.announced)-1], len(g.announced)
}

func (g *recGuard) lastBeat() fence.Heartbeat {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.beats) == 0 {
		return fence.Heartbeat{}
	}
	return g.beats[len(g.beats)-1]
}

// TestWriteDoor: a copy of a replicated share becomes writable only
// through openForWrite, which tells the guard first and refuses on a
// replica, on a fenced share, when the guard cannot be told, and once the
// agent is stopping.
func TestWriteDoor(t *testing.T) {
	t.Parallel()
	roles := []schema.Role{schema.RoleStorage, schema.RoleStorage, schema.RoleStorage}
	nodes, drivers := witnessFleet(t, roles...)
	leader := readyLeader(t, nodes)
	rest := except(nodes, leader)
	x, y := rest[0], rest[1]
	applyWitnessSpec(t, nodes, drivers, roles, fastPolicy, testShare{"projects", x.Name(), y.Name(), schema.FailoverAuto})
	waitRenewing(t, nodes, names(nodes)...)

	// x comes back with a guard; it starts fenced and lifts the fence
	// through the door, telling the guard first.
	stop(t, x)
	g := &recGuard{}
	x = startNode(t, Config{DataDir: x.cfg.DataDir, Listen: x.cfg.Listen, Driver: x.cfg.Driver, Guard: g})
	path := sharePath(x.Name(), "projects")
	waitUntil(t, x.Name()+" to lift its start fence", func() (bool, string) {
		ro, _ := readOnly(drivers[x.Name()], path)
		return !ro && len(x.Fenced()) == 0, fmt.Sprintf("read-only=%v fenced=%v", ro, x.Fenced())
	})
	h, n := g.lastAnnounced()
	if n == 0 || h.Active["projects"].Path != path || h.LeaseLeftMS <= 0 {
		t.Fatalf("before the share became writable: want the guard told projects at %s with lease left, got %d announcements, last %+v", path, n, h)
	}
	waitUntil(t, "a heartbeat naming projects writable", func() (bool, string) {
		b := g.lastBeat()
		return b.Active["projects"].Path == path, fmt.Sprintf("%+v", b)
	})

	// On the replica, the door is shut.
	if _, err := y.openForWrite("projects"); !errors.Is(err, errDoorClosed) || !strings.Contains(err.Error(), "active on "+x.Name()) {
		t.Fatalf("on the replica %s: want the door shut (active on %s), got %v", y.Name(), x.Name(), err)
	}

	// When the guard cannot be told, nothing opens.
	g.mu.Lock()
	g.fail = errors.New("pipe closed")
	g.mu.Unlock()
	if _, err := x.openForWrite("projects"); !errors.Is(err, errDoorClosed) || !strings.Contains(err.Error(), "guard could not be told") {
		t.Fatalf("guard unreachable: want the door shut, got %v", err)
	}
	g.mu.Lock()
	g.fail = nil
	g.mu.Unlock()
	done, err := x.openForWrite("projects")
	if err != nil {
		t.Fatalf("healthy and active: want the door open, got %v", err)
	}
	done()

	// A lapsed lease fences the share; the door stays shut while it is.
	x.leaseBlocked.Store(true)
	waitUntil(t, x.Name()+" to fence projects", func() (bool, string) {
		return x.Fenced()["projects"], fmt.Sprint(x.Fenced())
	})
	if _, err := x.openForWrite("projects"); !errors.Is(err, errDoorClosed) {
		t.Fatalf("fenced: want the door shut, got %v", err)
	}
	x.leaseBlocked.Store(false)
	waitUntil(t, x.Name()+" to unfence projects", func() (bool, string) {
		return len(x.Fenced()) == 0, fmt.Sprint(x.Fenced())
	})

	// Stopping fences the share, shuts the door and tells the guard that
	// nothing is writable.
	if err := x.FenceActive(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ro, _ := readOnly(drivers[x.Name()], path); !ro {
		t.Fatal("after FenceActive: want projects read-only")
	}
	if _, err := x.openForWrite("projects"); !errors.Is(err, errDoorClosed) || !strings.Contains(err.Error(), "stopping") {
		t.Fatalf("stopping: want the door shut, got %v", err)
	}
	if b := g.lastBeat(); len(b.Active) != 0 {
		t.Fatalf("after FenceActive: want the guard told nothing is writable, got %+v", b)
	}
}
