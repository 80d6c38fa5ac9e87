package reconcile_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// every returns the times from first to last (inclusive) step apart.
func every(t testing.TB, first, last string, step time.Duration) []string {
	t.Helper()
	var out []string
	for tm := mustTime(t, first); !tm.After(mustTime(t, last)); tm = tm.Add(step) {
		out = append(out, tm.Format(time.RFC3339))
	}
	return out
}

func TestKeep(t *testing.T) {
	// 2026-11-25 is a Wednesday; the week began on Monday 2026-11-23.
	if wd := mustTime(t, "2026-11-25T00:00:00Z").Weekday(); wd != time.Wednesday {
		t.Fatalf("fixture: 2026-11-25 is a %v", wd)
	}
	tests := []struct {
		name      string
		retention string
		keepMin   int
		now       string
		times     []string
		kept      []string // every other time is pruned
	}{
		{
			name:      "hourly keeps the first of each of the current hour and the 2 before",
			retention: "2h", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: every(t, "2026-11-25T09:40:00Z", "2026-11-25T12:30:00Z", 10*time.Minute),
			kept: []string{
				"2026-11-25T10:00:00Z", // first of 10:xx, 2 hours back
				"2026-11-25T11:00:00Z", // first of 11:xx
				"2026-11-25T12:00:00Z", // first of 12:xx, the current hour
				"2026-11-25T12:30:00Z", // keep_min 1: the newest
			},
		},
		{
			name:      "daily counts days back like btrbk: 1d is today and yesterday",
			retention: "1d", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: every(t, "2026-11-22T00:00:00Z", "2026-11-25T12:00:00Z", 12*time.Hour),
			kept: []string{
				"2026-11-24T00:00:00Z", // first of yesterday
				"2026-11-25T00:00:00Z", // first of today
				"2026-11-25T12:00:00Z", // newest
			},
		},
		{
			name:      "the first of a day is the oldest, even late in the day",
			retention: "2d", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: []string{"2026-11-23T23:59:59Z", "2026-11-24T23:00:00Z", "2026-11-24T23:30:00Z", "2026-11-25T01:00:00Z"},
			kept:  []string{"2026-11-23T23:59:59Z", "2026-11-24T23:00:00Z", "2026-11-25T01:00:00Z"},
		},
		{
			name:      "weeks start on Monday",
			retention: "2w", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: every(t, "2026-11-08T06:00:00Z", "2026-11-25T06:00:00Z", 24*time.Hour),
			kept: []string{
				"2026-11-09T06:00:00Z", // Monday, 2 weeks back
				"2026-11-16T06:00:00Z", // Monday, 1 week back
				"2026-11-23T06:00:00Z", // Monday, this week
				"2026-11-25T06:00:00Z", // newest
				// Sunday 2026-11-08 is the first of the week of Monday
				// 2026-11-02, 3 weeks back: pruned.
			},
		},
		{
			name:      "a week belongs to the month of its Monday",
			retention: "1m", keepMin: 1, now: "2026-12-02T12:00:00Z",
			times: []string{"2026-10-05T06:00:00Z", "2026-11-02T06:00:00Z", "2026-11-30T06:00:00Z", "2026-12-01T06:00:00Z", "2026-12-02T06:00:00Z"},
			kept: []string{
				"2026-11-02T06:00:00Z", // first weekly of November, 1 month back
				"2026-12-02T06:00:00Z", // newest
				// 2026-11-30 (Mon), 12-01 and 12-02 are in the week of
				// Monday 2026-11-30: November's, not its first. December has
				// no weekly of its own yet. October is 2 months back.
			},
		},
		{
			name:      "yearly * keeps the first weekly of every year",
			retention: "*y", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: []string{"2023-06-01T00:00:00Z", "2023-07-01T00:00:00Z", "2024-02-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-11-01T00:00:00Z"},
			kept: []string{
				"2023-06-01T00:00:00Z",
				"2024-02-01T00:00:00Z",
				// 2026-01-01 is a Thursday in the week of Monday 2025-12-29:
				// the first weekly of 2025.
				"2026-01-01T00:00:00Z",
				"2026-11-01T00:00:00Z", // 2026's first (and newest)
			},
		},
		{
			name:      "units cascade: 24h 7d 4w 12m over 60 days of hourlies",
			retention: "24h 7d 4w 12m", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: every(t, "2026-09-27T00:00:00Z", "2026-11-25T12:00:00Z", time.Hour),
			kept: append(append(every(t, "2026-11-24T12:00:00Z", "2026-11-25T12:00:00Z", time.Hour), // 25 hourlies
				// dailies 1..7 days back (today's is among the hourlies)
				every(t, "2026-11-18T00:00:00Z", "2026-11-24T00:00:00Z", 24*time.Hour)...),
				// weeklies: Mondays 4..1 weeks back (this week's, 2026-11-23,
				// is a daily already)
				"2026-10-26T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-09T00:00:00Z", "2026-11-16T00:00:00Z",
				// monthlies: the first weekly of October (Monday 2026-09-28
				// starts a September week) and of September (the Sunday
				// 2026-09-27, first of its week of Monday 09-21)
				"2026-10-05T00:00:00Z", "2026-09-27T00:00:00Z"),
		},
		{
			name:      "keep_min keeps the newest whatever the retention",
			retention: "1h", keepMin: 3, now: "2026-11-25T12:30:00Z",
			times: []string{"2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"},
			kept:  []string{"2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"},
		},
		{
			name:      "the future is kept and not counted in keep_min",
			retention: "1h", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: []string{"2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", "2026-11-25T14:00:00Z"},
			kept:  []string{"2026-11-21T00:00:00Z", "2026-11-25T14:00:00Z"},
		},
		{
			name:      "all hours",
			retention: "*h", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: []string{"2020-01-01T00:10:00Z", "2020-01-01T00:20:00Z", "2020-01-01T01:50:00Z"},
			kept:  []string{"2020-01-01T00:10:00Z", "2020-01-01T01:50:00Z"},
		},
		{
			name:      "unordered input",
			retention: "1h", keepMin: 1, now: "2026-11-25T12:30:00Z",
			times: []string{"2026-11-25T12:20:00Z", "2026-11-25T09:00:00Z", "2026-11-25T12:10:00Z", "2026-11-25T11:30:00Z"},
			kept:  []string{"2026-11-25T12:20:00Z", "2026-11-25T12:10:00Z", "2026-11-25T11:30:00Z"},
		},
		{name: "nothing", retention: "1d", keepMin: 1, now: "2026-11-25T12:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := schema.ParseRetention(tt.retention)
			if err != nil {
				t.Fatal(err)
			}
			times := make([]time.Time, len(tt.times))
			for i, s := range tt.times {
				times[i] = mustTime(t, s)
			}
			want := map[string]bool{}
			for _, s := range tt.kept {
				want[s] = true
			}
			got := reconcile.Keep(times, r, tt.keepMin, mustTime(t, tt.now))
			if len(got) != len(times) {
				t.Fatalf("Keep returned %d results for %d times", len(got), len(times))
			}
			var wrong []string
			for i, s := range tt.times {
				if got[i] != want[s] {
					wrong = append(wrong, map[bool]string{true: "kept ", false: "pruned "}[got[i]]+s)
				}
				delete(want, s)
			}
			for s := range want {
				wrong = append(wrong, "expected kept but not in input "+s)
			}
			if len(wrong) > 0 {
				t.Errorf("retention %q, keep_min %d, now %s: wrong:\n  %s", tt.retention, tt.keepMin, tt.now, strings.Join(wrong, "\n  "))
			}
		})
	}
}
