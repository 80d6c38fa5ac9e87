package reconcile_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
)

func TestTokenBucket(t *testing.T) {
	clock := &fakeClock{t: replicaStart}
	b := reconcile.NewTokenBucket(4<<20, clock.Now) // 4 MiB/s; saves up 0.1 s, 419430 bytes
	for _, step := range []struct {
		idle time.Duration
		take int
		want time.Duration
	}{
		{0, 1 << 20, 250 * time.Millisecond}, // starts empty
		{250 * time.Millisecond, 512 << 10, 125 * time.Millisecond},
		{125 * time.Millisecond, 0, 0},
		{10 * time.Second, 419430, 0},                             // idle: saved up the burst, no more
		{0, 1 << 20, 250 * time.Millisecond},                      // then the rate again
		{100 * time.Millisecond, 1 << 20, 400 * time.Millisecond}, // still in debt 150 ms
	} {
		clock.Advance(step.idle)
		got := b.Take(step.take)
		if d := got - step.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("after %v idle, take %d: wait %v, want %v", step.idle, step.take, got, step.want)
		}
	}
}

// TestRateReaderPaces reads 4 MiB at 4 MiB/s on a fake clock that moves
// only by the reader's sleeps: it sleeps a second in all, in small steps.
func TestRateReaderPaces(t *testing.T) {
	clock := &fakeClock{t: replicaStart}
	src := bytes.Repeat([]byte{7}, 4<<20)
	l := reconcile.NewRateReader(context.Background(), bytes.NewReader(src), 4<<20, clock.Now)
	var slept []time.Duration
	l.SetSleep(func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		clock.Advance(d)
		return nil
	})
	got, err := io.ReadAll(l)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	var total time.Duration
	for _, d := range slept {
		total += d
		if d > 101*time.Millisecond {
			t.Errorf("one sleep of %v: a read ran too far ahead", d)
		}
	}
	if d := total - time.Second; d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("slept %v in all, want 1s", total)
	}
}

// TestRateReaderRealTime reads 1 MiB at 4 MiB/s on the real clock.
func TestRateReaderRealTime(t *testing.T) {
	start := time.Now()
	n, err := io.Copy(io.Discard, reconcile.NewRateReader(context.Background(), bytes.NewReader(make([]byte, 1<<20)), 4<<20, nil))
	took := time.Since(start)
	if err != nil || n != 1<<20 {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("1 MiB at 4 MiB/s took %v, want about 250ms", took)
	}
}

// TestRateReaderStops ends a slow read when its context ends.
func TestRateReaderStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := io.Copy(io.Discard, reconcile.NewRateReader(ctx, bytes.NewReader(make([]byte, 1<<20)), 64<<10, nil))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read after the context ended: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the read took %v to stop", took)
	}
}
