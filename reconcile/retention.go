package reconcile

import (
	"slices"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// Keep says which snapshots a retention policy keeps. times are the
// snapshots' times, in any order; the result is aligned with times. Keep is
// pure: now is the reference time.
//
// It follows btrbk's scheduler (sub schedule in the btrbk script, v0.32,
// github.com/digint/btrbk; btrbk.conf(5) "RETENTION POLICY"), with
// preserve_day_of_week monday and preserve_hour_of_day 0, in UTC:
//
//   - The first (oldest) snapshot of an hour is that hour's hourly. btrbk.conf(5):
//     "The first backup of an hour is considered an hourly backup."
//   - The first hourly of a day is its daily, the first daily of a week
//     (weeks start on Monday) its weekly, the first weekly of a month its
//     monthly, the first monthly of a year its yearly. A week belongs to the
//     month and year its Monday falls in: btrbk's "months start on first
//     $preserve_day_of_week of month".
//   - An hourly is kept when its hour is at most Hourly hours back from now's
//     hour (btrbk: delta_hours <= preserve_hourly), so "24h" keeps the
//     current hour and the 24 before it; likewise days, weeks, months
//     (counted from now's calendar month) and years. All (*) keeps every one.
//
// Where fleetctl differs from btrbk: keepMin is a count, the newest keepMin
// snapshots are always kept (btrbk's preserve_min is a duration or
// "latest"), and snapshots newer than now (a clock that was ahead) are always
// kept, as btrbk does with preserve_date_in_future.
func Keep(times []time.Time, r schema.Retention, keepMin int, now time.Time) []bool {
	keep := make([]bool, len(times))
	now = now.UTC()

	// Oldest first, as btrbk sorts its schedule; the future is kept and
	// takes no part in the periods.
	order := make([]int, 0, len(times))
	for i, t := range times {
		if t.After(now) {
			keep[i] = true
			continue
		}
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int { return times[a].Compare(times[b]) })

	for n := 0; n < keepMin && n < len(order); n++ {
		keep[order[len(order)-1-n]] = true
	}

	// Now's month and year are its calendar ones, as btrbk's tm_now; only
	// snapshots are counted in the month and year of their week's Monday.
	nowP := periodsOf(now)
	nowP.month = int64(now.Year())*12 + int64(now.Month()) - 1
	nowP.year = int64(now.Year())
	// Each level picks, per period, the first of the previous level's picks.
	// Periods nest (hours in days, days in Monday weeks, weeks in the month
	// and year of their Monday), so that is the oldest snapshot of the
	// period, and one pass per level over the sorted list finds it.
	levels := []struct {
		count int
		key   func(p periods) int64
	}{
		{r.Hourly, func(p periods) int64 { return p.hour }},
		{r.Daily, func(p periods) int64 { return p.day }},
		{r.Weekly, func(p periods) int64 { return p.week }},
		{r.Monthly, func(p periods) int64 { return p.month }},
		{r.Yearly, func(p periods) int64 { return p.year }},
	}
	ps := make([]periods, len(order))
	for j, i := range order {
		ps[j] = periodsOf(times[i].UTC())
	}
	for _, l := range levels {
		if l.count == 0 {
			continue
		}
		prev := int64(-1 << 62)
		for j, i := range order {
			k := l.key(ps[j])
			if k == prev {
				continue // not the first of its period
			}
			prev = k
			if l.count == schema.All || l.key(nowP)-k <= int64(l.count) {
				keep[i] = true
			}
		}
	}
	return keep
}

// periods numbers the hour, day, week, month and year a time falls in, so
// that subtracting two numbers gives how many periods back one is (btrbk's
// delta_hours, delta_days, …).
type periods struct {
	hour, day, week, month, year int64
}

func periodsOf(t time.Time) periods {
	sec := t.Unix()
	hour := floorDiv(sec, 3600)
	day := floorDiv(sec, 86400)
	// 1970-01-01 was a Thursday: day+3 counts from Monday 1969-12-29.
	sinceMonday := (day + 3) - floorDiv(day+3, 7)*7
	week := floorDiv(day+3, 7)
	monday := time.Unix((day-sinceMonday)*86400, 0).UTC()
	return periods{
		hour:  hour,
		day:   day,
		week:  week,
		month: int64(monday.Year())*12 + int64(monday.Month()) - 1,
		year:  int64(monday.Year()),
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
