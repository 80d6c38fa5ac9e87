package reconcile

import (
	"context"
	"io"
	"time"
)

// tokenBucket paces a stream to rate bytes per second. It starts empty, so
// a stream never runs ahead of its rate, and saves up at most burst bytes
// while the stream is idle. A take may overdraw it; the debt is the wait.
// It is not safe for concurrent use: one stream, one bucket.
type tokenBucket struct {
	rate   float64 // bytes per second
	burst  float64 // most bytes saved up
	tokens float64 // may be negative: bytes taken ahead of the rate
	last   time.Time

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// newTokenBucket makes a bucket for rate bytes per second (rate > 0) that
// saves up a tenth of a second's worth, at least one chunk.
func newTokenBucket(rate int64, now func() time.Time) *tokenBucket {
	if now == nil {
		now = time.Now
	}
	return &tokenBucket{
		rate:  float64(rate),
		burst: float64(chunkFor(rate)),
		last:  now(),
		now:   now,
		sleep: sleepContext,
	}
}

// take takes n bytes' worth of tokens and returns how long the taker must
// wait before the bucket is out of debt. It does not sleep.
func (b *tokenBucket) take(n int) time.Duration {
	now := b.now()
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(b.burst, b.tokens+elapsed.Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// wait takes n bytes' worth and sleeps out the debt, or until ctx ends.
func (b *tokenBucket) wait(ctx context.Context, n int) error {
	if d := b.take(n); d > 0 {
		return b.sleep(ctx, d)
	}
	return ctx.Err()
}

// sleepContext sleeps for d or until ctx ends, and then returns ctx's error.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// chunkFor is how much one read of a paced stream may take: a tenth of a
// second's worth, between 4 KiB and 1 MiB, so the pace is smooth at low
// rates and cheap at high ones.
func chunkFor(rate int64) int {
	return int(min(max(rate/10, 4<<10), 1<<20))
}

// rateReader reads from r no faster than its bucket allows.
type rateReader struct {
	ctx    context.Context
	r      io.Reader
	bucket *tokenBucket
	chunk  int
}

// newRateReader paces r to rate bytes per second (rate > 0) until ctx
// ends; after that its reads fail with ctx's error.
func newRateReader(ctx context.Context, r io.Reader, rate int64, now func() time.Time) *rateReader {
	return &rateReader{ctx: ctx, r: r, bucket: newTokenBucket(rate, now), chunk: chunkFor(rate)}
}

// PaceReader returns r paced to rate bytes per second (none when rate <=
// 0) until ctx ends; after that its reads fail with ctx's error. A
// Transport paces what it puts on the wire with it (SendHeader's
// BandwidthLimit): after compression, so that the limit is the link's.
func PaceReader(ctx context.Context, r io.Reader, rate int64) io.Reader {
	if rate <= 0 {
		return r
	}
	return newRateReader(ctx, r, rate, nil)
}

// Read reads at most one chunk and then waits until the bucket has paid
// for it, so the bytes returned so far never run ahead of the rate by more
// than the burst.
func (l *rateReader) Read(p []byte) (int, error) {
	if len(p) > l.chunk {
		p = p[:l.chunk]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.bucket.wait(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
