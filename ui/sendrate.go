package ui

import (
	"sync"
	"time"
)

// The replication page shows a running send's rate, and for a first
// (full) send an ETA, from the bytes the source reports at each view: the
// ui keeps the last sample of each share's send, as fleetctl replicate
// --follow does between its polls.

// sendSample is the bytes a share's running send had sent at a time.
type sendSample struct {
	run   time.Time // the run's start (its LastAttempt): a new run starts over
	bytes int64
	at    time.Time
}

// sendRates keeps the last sample of each share's running send.
type sendRates struct {
	mu   sync.Mutex
	last map[string]sendSample
}

// observe records share's send (started at run) at bytes now, and returns
// the rate since the previous sample of the same run (0 when there is
// none yet, or no time passed).
func (r *sendRates) observe(share string, run time.Time, bytes int64, now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]sendSample{}
	}
	prev, ok := r.last[share]
	r.last[share] = sendSample{run: run, bytes: bytes, at: now}
	return sendRate(prev, ok, run, bytes, now)
}

// sendRate is the rate from prev to (bytes, now), when prev is a sample
// of the same run, earlier, with no more bytes.
func sendRate(prev sendSample, ok bool, run time.Time, bytes int64, now time.Time) float64 {
	dt := now.Sub(prev.at).Seconds()
	if !ok || !prev.run.Equal(run) || dt <= 0 || bytes < prev.bytes {
		return 0
	}
	return float64(bytes-prev.bytes) / dt
}

// sendETA is how long the rest of a send of total bytes takes at rate,
// with sent so far; 0 when unknown.
func sendETA(total, sent int64, rate float64) time.Duration {
	if total <= 0 || rate <= 0 || sent >= total {
		return 0
	}
	return time.Duration(float64(total-sent) / rate * float64(time.Second))
}
