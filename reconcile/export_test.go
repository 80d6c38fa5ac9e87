package reconcile

import (
	"context"
	"time"
)

// Hooks into reconcile's internals for its external tests (package
// reconcile_test). Most tests live outside the package because they use
// reconciletest.FakeDriver, which imports reconcile, or fixtures shared with
// those that do; white-box tests that need neither stay in package
// reconcile (btrfs_test.go and the *_internal_test.go files). This file is
// compiled only into the tests, so none of it reaches the binary.

// Replication: the snapshot listings, the retry delays and the schedule.
var (
	ReplicationSnapshots = replicationSnapshots
	ReceivedSnapshots    = receivedSnapshots
	Backoff              = backoff
	Interval             = interval
)

// MaxRetry caps the retry delay.
const MaxRetry = maxRetry

// Complete says the subvolume is a completed receive.
func (s receivedSnap) Complete() bool { return s.complete() }

// Subvolume is the received subvolume.
func (s receivedSnap) Subvolume() Subvolume { return s.sv }

// Name is the subvolume's name relative to the received directory.
func (s receivedSnap) Name() string { return s.name }

// SetRetryBase sets the first retry delay after a failed attempt; call it
// before Run.
func (rp *Replicator) SetRetryBase(d time.Duration) { rp.retryBase = d }

// Waiting counts the RunNext callers waiting for the share's running
// attempt.
func (rp *Replicator) Waiting(share string) int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.shares[share].waiting
}

// Claim marks share busy, unless it already is.
func (rv *Receiver) Claim(share string) bool { return rv.claim(share) }

// Release ends a Claim.
func (rv *Receiver) Release(share string) { rv.release(share) }

// Rate limiting: the token bucket and the reader it paces.
var (
	NewTokenBucket = newTokenBucket
	NewRateReader  = newRateReader
)

// Take takes n bytes' worth of tokens and returns how long the taker must
// wait; it does not sleep.
func (b *tokenBucket) Take(n int) time.Duration { return b.take(n) }

// SetSleep replaces the reader's sleep, so a test on a fake clock can
// advance the clock instead.
func (r *rateReader) SetSleep(sleep func(ctx context.Context, d time.Duration) error) {
	r.bucket.sleep = sleep
}

// StartCPU starts measuring a benchmark's CPU time (cpu-ms/op).
var StartCPU = startCPU
