package ui

import (
	"testing"
	"time"
)

// The rate is from the previous sample of the same run; a new run, a
// first sample, a clock that did not move or bytes that went back give
// none; the ETA needs a total and a rate.
func TestSendRate(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	run := t0.Add(-time.Minute)
	var r sendRates
	if got := r.observe("p", run, 100<<20, t0); got != 0 {
		t.Errorf("first sample: rate %v, want 0", got)
	}
	if got := r.observe("p", run, 150<<20, t0.Add(5*time.Second)); got != 10<<20 {
		t.Errorf("50 MiB in 5 s: rate %v, want %v", got, 10<<20)
	}
	if got := r.observe("p", run.Add(time.Hour), 1<<20, t0.Add(10*time.Second)); got != 0 {
		t.Errorf("a new run: rate %v, want 0", got)
	}
	if got := r.observe("p", run.Add(time.Hour), 1<<20, t0.Add(10*time.Second)); got != 0 {
		t.Errorf("no time passed: rate %v, want 0", got)
	}
	if got := sendETA(1000<<20, 150<<20, 10<<20); got != 85*time.Second {
		t.Errorf("ETA = %v, want 85s", got)
	}
	for _, c := range [][3]float64{{0, 1, 1}, {10, 1, 0}, {10, 10, 1}} {
		if got := sendETA(int64(c[0]), int64(c[1]), c[2]); got != 0 {
			t.Errorf("sendETA(%v) = %v, want 0", c, got)
		}
	}
}
