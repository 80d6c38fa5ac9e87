package fence

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// Heartbeat is what the agent tells its guard every BeatInterval: the
// replicated shares it is active for and holds writable, and how long its
// lease with the leader still holds (fence_after minus the lease's age)
// when it sent the beat.
type Heartbeat struct {
	Active      Records `json:"active"`
	LeaseLeftMS int64   `json:"lease_left_ms"`
}

// BeatInterval is how often the agent sends a heartbeat to its guard.
const BeatInterval = 250 * time.Millisecond

// Grace is how long after the agent's lease lapsed the guard waits for the
// agent to fence itself before it does. The fence margin between
// fence_after and failover_after (at least 5 s, schema.FenceMargin) covers
// it and the fencing itself with room to spare.
const Grace = 2 * time.Second

// Due decides whether the guard must fence now: last is the newest
// heartbeat, received at recvAt, and exited says the agent is gone (its
// end of the pipe closed). The guard fences when the agent holds active
// shares writable and has exited, or when the lease it last reported has
// been over for Grace: whether the agent fell silent (no newer beat), or
// keeps beating that its shares are writable past its lease (its own
// fencing is stuck: each beat then reports less time left, so the
// deadline does not move). It is pure: the clock is passed in.
func Due(last Heartbeat, recvAt, now time.Time, exited bool) (bool, string) {
	if len(last.Active) == 0 {
		return false, ""
	}
	if exited {
		return true, "the agent exited while its shares were writable"
	}
	left := time.Duration(last.LeaseLeftMS) * time.Millisecond
	if !now.After(recvAt.Add(left + Grace)) {
		return false, ""
	}
	if left <= 0 {
		return true, fmt.Sprintf("the agent's lease lapsed %s ago and it still reports its shares writable", (now.Sub(recvAt) - left).Round(time.Millisecond))
	}
	return true, fmt.Sprintf("no heartbeat from the agent for %s, past its lease", now.Sub(recvAt).Round(time.Millisecond))
}

// fenceTimeout bounds the guard's fencing: it holds the data dir's lock,
// which a restarted agent waits for.
const fenceTimeout = 30 * time.Second

// Guard watches one agent through its heartbeats and fences the agent's
// active shares when Due says so. It runs in its own process, so a
// crashed, killed or stopped agent cannot take it down.
type Guard struct {
	// Beats is the read end of the agent's heartbeat pipe: one JSON
	// Heartbeat per line.
	Beats io.Reader
	// Driver makes subvolumes read-only.
	Driver ReadOnlySetter
	// DataDir is the agent's data dir, where the fences are recorded.
	DataDir string
	// Kill stops the agent for good (SIGKILL) once the guard has fenced
	// it because it fell silent: a watchdog's reset. The restarted agent
	// starts fenced (FileFenced). Nil: the agent is left as it is.
	Kill func() error
	// Log receives what the guard does.
	Log *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Tick is how often the guard checks; 100ms when zero.
	Tick time.Duration
}

// Run reads heartbeats until the agent exits or the guard fences; it
// returns the shares it fenced (none when the agent stopped with nothing
// writable).
func (g *Guard) Run(ctx context.Context) ([]string, error) {
	now := g.Now
	if now == nil {
		now = time.Now
	}
	tick := g.Tick
	if tick == 0 {
		tick = 100 * time.Millisecond
	}
	beats := make(chan Heartbeat, 16)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(g.Beats)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var h Heartbeat
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
				g.Log.Warn("guard: unreadable heartbeat; ignored", "err", err)
				continue
			}
			beats <- h
		}
		exited <- sc.Err()
	}()

	var last Heartbeat
	recvAt := now()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case h := <-beats:
			last, recvAt = h, now()
			continue
		case err := <-exited:
			// Beats sent just before the exit are still queued.
			for drained := false; !drained; {
				select {
				case h := <-beats:
					last, recvAt = h, now()
				default:
					drained = true
				}
			}
			if err != nil {
				g.Log.Warn("guard: heartbeat pipe failed; counting the agent as gone", "err", err)
			}
			fire, why := Due(last, recvAt, now(), true)
			if !fire {
				return nil, nil
			}
			return g.fence(ctx, last.Active, why, nil)
		case <-t.C:
		}
		if fire, why := Due(last, recvAt, now(), false); fire {
			return g.fence(ctx, last.Active, why, exited)
		}
	}
}

// fence stops a silent agent (exited is its pipe's end, nil when it is
// gone already) and then makes the shares read-only and records the
// fences. The agent is stopped first: one that is slow rather than hung
// could otherwise make a share writable again between the guard's fence
// and its kill.
func (g *Guard) fence(ctx context.Context, active Records, why string, exited <-chan error) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	defer cancel()
	shares := slices.Sorted(maps.Keys(active))
	g.Log.Warn("guard: fencing the agent's active shares", "why", why, "shares", shares)
	var errs []error
	if exited != nil && g.Kill != nil {
		g.Log.Warn("guard: stopping the silent agent for good (SIGKILL); restarted, it starts fenced")
		if err := g.Kill(); err != nil {
			errs = append(errs, fmt.Errorf("stop the agent: %w", err))
		} else {
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				errs = append(errs, errors.New("the agent did not exit within 5s of SIGKILL"))
			}
		}
	}
	var wg sync.WaitGroup
	results := make([]error, len(shares))
	// Each share is fenced at once, not one after another: a slow btrfs
	// command must not hold up the others.
	for i, share := range shares {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = MakeReadOnly(ctx, g.Driver, active[share].Path)
		}()
	}
	wg.Wait()
	var done []string
	fenced := Records{}
	for i, share := range shares {
		if results[i] != nil {
			errs = append(errs, fmt.Errorf("fence share %s: %w", share, results[i]))
			continue
		}
		done = append(done, share)
		fenced[share] = active[share]
	}
	if err := AddFenced(g.DataDir, fenced); err != nil {
		errs = append(errs, err)
	}
	if len(done) > 0 {
		g.Log.Warn("guard: fenced", "shares", done)
	}
	return done, errors.Join(errs...)
}

// Beater sends heartbeats to the guard. Beat never blocks its caller: a
// stopped or slow guard only makes the beats it misses stale. Announce is
// the synchronous kind, for a beat the guard must have before the agent
// goes on (a share about to become writable).
type Beater struct {
	mu     sync.Mutex
	closed bool
	latest *Heartbeat
	wake   chan struct{}
	done   chan struct{}

	wmu sync.Mutex // serializes writes to w
	w   io.WriteCloser
}

// NewBeater writes heartbeats to w (the write end of the guard's pipe)
// until Close.
func NewBeater(w io.WriteCloser) *Beater {
	b := &Beater{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.run()
	return b
}

// Beat queues h, replacing a beat not yet written.
func (b *Beater) Beat(h Heartbeat) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.latest = &h
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Announce writes h into the pipe now and returns once it is there (the
// guard reads every beat in the pipe before it acts on the agent's exit),
// or fails after timeout: then the guard may not know, and the caller must
// not go on.
func (b *Beater) Announce(h Heartbeat, timeout time.Duration) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errors.New("the guard's heartbeat pipe is closed")
	}
	line, err := json.Marshal(h)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if d, ok := b.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		if err := d.SetWriteDeadline(time.Now().Add(timeout)); err == nil {
			defer d.SetWriteDeadline(time.Time{})
		}
	}
	if _, err := b.w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("tell the guard: %w", err)
	}
	return nil
}

func (b *Beater) run() {
	defer close(b.done)
	for range b.wake {
		b.mu.Lock()
		h := b.latest
		b.latest = nil
		b.mu.Unlock()
		if h == nil {
			continue
		}
		line, err := json.Marshal(h)
		if err != nil {
			continue
		}
		b.wmu.Lock()
		_, err = b.w.Write(append(line, '\n'))
		b.wmu.Unlock()
		if err != nil {
			return // the guard is gone; the agent starts a new one
		}
	}
}

// Close writes the beat still queued, stops the beater and closes the
// pipe, which the guard reads as the agent's exit. A guard that reads
// nothing for a second does not hold it up.
func (b *Beater) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.wake)
	b.mu.Unlock()
	select {
	case <-b.done:
	case <-time.After(time.Second):
	}
	err := b.w.Close()
	<-b.done
	return err
}
