package schema_test

import (
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

func TestQuota(t *testing.T) {
	tests := []struct {
		in    string
		bytes uint64
		str   string // how String writes it back
	}{
		{"200GiB", 200 << 30, "200GiB"},
		{"1.5TiB", 3 << 39, "1536GiB"},
		{"500GB", 500e9, "500GB"},
		{"2TB", 2e12, "2TB"},
		{"1PiB", 1 << 50, "1PiB"},
		{"16MiB", 16 << 20, "16MiB"},
		{"200 GiB", 200 << 30, "200GiB"},
		{" 20000kB ", 20e6, "20MB"},
		{"1000000000B", 1e9, "1GB"},
		{"1073741824B", 1 << 30, "1GiB"},
		{"17.5MB", 17.5e6, "17500KB"},
	}
	for _, tt := range tests {
		var q schema.Quota
		if err := q.UnmarshalText([]byte(tt.in)); err != nil {
			t.Errorf("quota %q: %v", tt.in, err)
			continue
		}
		if uint64(q) != tt.bytes {
			t.Errorf("quota %q is %d bytes, want %d", tt.in, uint64(q), tt.bytes)
		}
		if q.String() != tt.str {
			t.Errorf("quota %q written back as %q, want %q", tt.in, q.String(), tt.str)
		}
		text, err := q.MarshalText()
		if err != nil || string(text) != tt.str {
			t.Errorf("quota %q: MarshalText gives %q, %v; want %q", tt.in, text, err, tt.str)
		}
		var again schema.Quota
		if err := again.UnmarshalText([]byte(q.String())); err != nil || again != q {
			t.Errorf("quota %q: %q reads back as %d (%v), want %d", tt.in, q.String(), uint64(again), err, uint64(q))
		}
	}
}

func TestQuotaRejected(t *testing.T) {
	tests := []struct{ in, want string }{
		{"200", `"200" has no unit; write it like 200GiB (binary) or 200GB (decimal)`},
		{"1.5T", `"1.5T": unit "T" is ambiguous; write 1.5TiB (binary) or 1.5TB (decimal)`},
		{"2gib", `"2gib": unknown unit "gib"; use B, KiB, MiB, GiB, TiB, PiB or KB, MB, GB, TB, PB`},
		{"-1GiB", `"-1GiB" is not a size; write it like 200GiB or 500GB`},
		{"0B", `"0B": a quota of zero holds nothing; omit quota for no limit`},
		{"16777215B", `"16777215B" is below the smallest quota, 16MiB`},
		{"8192PiB", `"8192PiB" is larger than any filesystem`},
	}
	for _, tt := range tests {
		var q schema.Quota
		err := q.UnmarshalText([]byte(tt.in))
		if err == nil {
			t.Errorf("quota %q accepted as %d bytes, want error %q", tt.in, uint64(q), tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("quota %q:\nwant error %q\ngot        %q", tt.in, tt.want, err)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Minute, "1m"},
		{90 * time.Minute, "1h30m"},
		{time.Hour, "1h"},
		{2 * time.Hour, "2h"},
		{30 * time.Second, "30s"},
		{90 * time.Second, "1m30s"},
		{time.Hour + 30*time.Second, "1h0m30s"},
		{250 * time.Millisecond, "250ms"},
		{7500 * time.Millisecond, "7.5s"},
		{10 * time.Minute, "10m"},
	}
	for _, tt := range tests {
		d := schema.Duration(tt.d)
		if got := d.String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.d, got, tt.want)
		}
		var back schema.Duration
		if err := back.UnmarshalText([]byte(d.String())); err != nil || back != d {
			t.Errorf("%q reads back as %v (%v), want %v", d.String(), time.Duration(back), err, tt.d)
		}
	}
}

func TestTarget(t *testing.T) {
	var tg schema.Target
	if err := tg.UnmarshalText([]byte("nas2/tank")); err != nil {
		t.Fatalf("nas2/tank: %v", err)
	}
	if tg != (schema.Target{Appliance: "nas2", Pool: "tank"}) || tg.String() != "nas2/tank" {
		t.Fatalf("nas2/tank read as %+v, written back as %q", tg, tg.String())
	}
	if s := (schema.Target{}).String(); s != "" {
		t.Errorf("the zero Target is written as %q, want empty", s)
	}
	for _, in := range []string{"nas2", "/tank", "nas2/", "nas2/tank/x", ""} {
		var tg schema.Target
		err := tg.UnmarshalText([]byte(in))
		want := `"` + in + `" is not a target; write it as APPLIANCE/POOL, like nas2/tank`
		if err == nil || err.Error() != want {
			t.Errorf("target %q: want error %q, got %v", in, want, err)
		}
	}
}

func TestRetention(t *testing.T) {
	tests := []struct {
		in   string
		want schema.Retention
		str  string
	}{
		{"24h 7d 4w 12m 2y", retention(24, 7, 4, 12, 2), "24h 7d 4w 12m 2y"},
		{"7d", retention(0, 7, 0, 0, 0), "7d"},
		{"*d", retention(0, schema.All, 0, 0, 0), "*d"},
		{"  48h   *m ", retention(48, 0, 0, schema.All, 0), "48h *m"},
		{"2y 6m", retention(0, 0, 0, 6, 2), "2y 6m"},
	}
	for _, tt := range tests {
		r, err := schema.ParseRetention(tt.in)
		if err != nil {
			t.Errorf("retention %q: %v", tt.in, err)
			continue
		}
		if r.Hourly != tt.want.Hourly || r.Daily != tt.want.Daily || r.Weekly != tt.want.Weekly || r.Monthly != tt.want.Monthly || r.Yearly != tt.want.Yearly {
			t.Errorf("retention %q read as %+v, want %+v", tt.in, r, tt.want)
		}
		if r.String() != tt.str || r.IsZero() {
			t.Errorf("retention %q written back as %q (zero %v), want %q", tt.in, r.String(), r.IsZero(), tt.str)
		}
	}
	if !(schema.Retention{}).IsZero() {
		t.Errorf("the zero Retention is not IsZero")
	}
}

func retention(h, d, w, m, y int) schema.Retention {
	return schema.Retention{Hourly: h, Daily: d, Weekly: w, Monthly: m, Yearly: y}
}

func TestRetentionRejected(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `empty retention; write it like "24h 7d 4w 12m"`},
		{"0d", `"0d": "0d" keeps nothing; leave it out`},
		{"7d 3d", `"7d 3d": unit "d" appears twice`},
		{"7 days", `"7 days": "7" is not a count with a unit h, d, w, m or y (like 7d)`},
		{"7D", `"7D": "7D" is not a count with a unit h, d, w, m or y (like 7d)`},
		{"100001h", `"100001h": "100001h" is too large`},
	}
	for _, tt := range tests {
		_, err := schema.ParseRetention(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("retention %q: want error %q, got %v", tt.in, tt.want, err)
		}
	}
}

func TestScheduleParse(t *testing.T) {
	tests := []struct {
		in       string
		str      string
		interval time.Duration
	}{
		{"every 10m", "every 10m", 10 * time.Minute},
		{"every 90s", "every 1m30s", 90 * time.Second},
		{" every  1h ", "every 1h", time.Hour},
		{"0 2 * * *", "0 2 * * *", 0},
		{"@daily", "@daily", 0},
		{"@Weekly", "@Weekly", 0},
	}
	for _, tt := range tests {
		sc, err := schema.ParseSchedule(tt.in)
		if err != nil {
			t.Errorf("schedule %q: %v", tt.in, err)
			continue
		}
		if sc.String() != tt.str || sc.Interval() != tt.interval || sc.IsZero() {
			t.Errorf("schedule %q: written back as %q with interval %v, want %q and %v", tt.in, sc.String(), sc.Interval(), tt.str, tt.interval)
		}
	}
	if !(schema.Schedule{}).IsZero() || !(schema.Schedule{}).Next(time.Now()).IsZero() {
		t.Errorf("the zero Schedule must be IsZero and never fire")
	}
}

func TestScheduleNext(t *testing.T) {
	at := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	// 2024-03-04 is a Monday.
	tests := []struct {
		sched string
		from  time.Time
		want  time.Time
	}{
		// "every" runs at multiples of the interval since the Unix epoch.
		{"every 10m", at(2024, 3, 5, 10, 3, 27), at(2024, 3, 5, 10, 10, 0)},
		{"every 10m", at(2024, 3, 5, 10, 10, 0), at(2024, 3, 5, 10, 20, 0)}, // strictly after
		{"every 10m", at(2024, 3, 5, 23, 55, 0), at(2024, 3, 6, 0, 0, 0)},
		{"every 1h", at(2024, 3, 5, 10, 0, 0).Add(time.Nanosecond), at(2024, 3, 5, 11, 0, 0)},
		// 2024-01-01T00:00Z is 4057302 intervals of 7m plus 6m after the epoch.
		{"every 7m", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 1, 0)},
		{"every 7m", time.Unix(0, 0).UTC(), at(1970, 1, 1, 0, 7, 0)},

		{"0 2 * * *", at(2024, 3, 5, 1, 59, 59), at(2024, 3, 5, 2, 0, 0)},
		{"0 2 * * *", at(2024, 3, 5, 2, 0, 0), at(2024, 3, 6, 2, 0, 0)},
		{"0 2 * * *", at(2024, 12, 31, 3, 0, 0), at(2025, 1, 1, 2, 0, 0)},
		{"*/15 * * * *", at(2024, 3, 5, 10, 7, 0), at(2024, 3, 5, 10, 15, 0)},
		{"*/15 * * * *", at(2024, 3, 5, 10, 45, 0), at(2024, 3, 5, 11, 0, 0)},
		{"*/15 * * * *", at(2024, 3, 5, 23, 59, 30), at(2024, 3, 6, 0, 0, 0)},
		{"0 0 * * mon", at(2024, 3, 5, 12, 0, 0), at(2024, 3, 11, 0, 0, 0)},
		{"0 0 * * mon", at(2024, 3, 3, 23, 59, 0), at(2024, 3, 4, 0, 0, 0)},
		{"0 0 1 * *", at(2024, 3, 5, 12, 0, 0), at(2024, 4, 1, 0, 0, 0)},
		{"0 0 1 * *", at(2024, 12, 15, 0, 0, 0), at(2025, 1, 1, 0, 0, 0)},
		{"@monthly", at(2024, 1, 31, 0, 0, 0), at(2024, 2, 1, 0, 0, 0)},
		{"@hourly", at(2024, 3, 5, 10, 0, 0), at(2024, 3, 5, 11, 0, 0)},
		{"@yearly", at(2024, 3, 5, 0, 0, 0), at(2025, 1, 1, 0, 0, 0)},
		{"0 9-17/4 * * *", at(2024, 3, 5, 9, 30, 0), at(2024, 3, 5, 13, 0, 0)},
		{"0 9-17/4 * * *", at(2024, 3, 5, 17, 30, 0), at(2024, 3, 6, 9, 0, 0)},
		{"30 4 1,15 * *", at(2024, 3, 2, 0, 0, 0), at(2024, 3, 15, 4, 30, 0)},
		{"0 12 * feb,aug *", at(2024, 3, 5, 0, 0, 0), at(2024, 8, 1, 12, 0, 0)},

		// Both day fields restricted: either matches (Vixie cron). From
		// Tuesday the 5th, Friday the 8th comes first, then Wednesday the 13th,
		// then Friday the 15th.
		{"0 0 13 * fri", at(2024, 3, 5, 0, 0, 0), at(2024, 3, 8, 0, 0, 0)},
		{"0 0 13 * fri", at(2024, 3, 8, 0, 0, 0), at(2024, 3, 13, 0, 0, 0)},
		{"0 0 13 * fri", at(2024, 3, 13, 0, 0, 0), at(2024, 3, 15, 0, 0, 0)},
		// Only one restricted: that one alone decides.
		{"0 0 13 * *", at(2024, 3, 5, 0, 0, 0), at(2024, 3, 13, 0, 0, 0)},
		{"0 0 * * fri", at(2024, 3, 8, 0, 0, 0), at(2024, 3, 15, 0, 0, 0)},
		// As in Vixie cron, a field starting with * (like */2) counts as
		// unrestricted, so both must match: the 13th that is a Sunday,
		// Tuesday, Thursday or Saturday (Wednesday 13 March is not).
		{"0 0 13 * */2", at(2024, 3, 5, 0, 0, 0), at(2024, 4, 13, 0, 0, 0)},

		// Sunday is 0, 7 and sun.
		{"0 0 * * 0", at(2024, 3, 5, 0, 0, 0), at(2024, 3, 10, 0, 0, 0)},
		{"0 0 * * 7", at(2024, 3, 5, 0, 0, 0), at(2024, 3, 10, 0, 0, 0)},
		{"0 0 * * SUN", at(2024, 3, 5, 0, 0, 0), at(2024, 3, 10, 0, 0, 0)},
		{"0 0 * * 5-7", at(2024, 3, 9, 12, 0, 0), at(2024, 3, 10, 0, 0, 0)},
		{"@weekly", at(2024, 3, 5, 0, 0, 0), at(2024, 3, 10, 0, 0, 0)},

		// Leap days are found, four years on; 31 February never comes.
		{"0 0 29 2 *", at(2024, 3, 1, 0, 0, 0), at(2028, 2, 29, 0, 0, 0)},
		{"0 0 31 2 *", at(2024, 3, 5, 0, 0, 0), time.Time{}},
		{"0 0 30 feb *", at(2024, 1, 1, 0, 0, 0), time.Time{}},
	}
	for _, tt := range tests {
		sc, err := schema.ParseSchedule(tt.sched)
		if err != nil {
			t.Errorf("schedule %q: %v", tt.sched, err)
			continue
		}
		got := sc.Next(tt.from)
		if !got.Equal(tt.want) {
			t.Errorf("%q after %s: got %s, want %s", tt.sched, tt.from.Format(time.RFC3339Nano), got.Format(time.RFC3339), tt.want.Format(time.RFC3339))
		}
		if !got.IsZero() && got.Location() != time.UTC {
			t.Errorf("%q: Next returned a time in %v, want UTC like its argument", tt.sched, got.Location())
		}
	}
}

func TestScheduleRejected(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `empty schedule; write it like "every 10m" or "0 * * * *"`},
		{"every 0s", `"every 0s": the interval must be at least 1s`},
		{"every 500ms", `"every 500ms": the interval must be at least 1s`},
		{"every day", `"every day": "day" is not a duration; write it like "every 10m" or "every 1h"`},
		{"@fortnightly", `"@fortnightly": unknown macro; use @hourly, @daily, @weekly, @monthly or @yearly`},
		{"0 2 * *", `"0 2 * *": a cron line has 5 fields (minute hour day-of-month month day-of-week), found 4; or write "every 10m"`},
		{"0 0 0 * * *", `"0 0 0 * * *": a cron line has 5 fields (minute hour day-of-month month day-of-week), found 6; or write "every 10m"`},
		{"60 * * * *", `"60 * * * *": minute field "60": 60 is out of range 0-59`},
		{"0 0 0 * *", `"0 0 0 * *": day of month field "0": 0 is out of range 1-31`},
		{"0 0 * 13 *", `"0 0 * 13 *": month field "13": 13 is out of range 1-12`},
		{"0 0 * * 8", `"0 0 * * 8": day of week field "8": 8 is out of range 0-7`},
		{"0 0 * smarch *", `"0 0 * smarch *": month field "smarch": "smarch" is neither a number nor a name like jan`},
		{"x * * * *", `"x * * * *": minute field "x": "x" is not a number`},
		{"*/x * * * *", `"*/x * * * *": minute field "*/x": step "x" must be a positive number`},
		{"0 10-2 * * *", `"0 10-2 * * *": hour field "10-2": range 10-2 runs backwards`},
	}
	for _, tt := range tests {
		_, err := schema.ParseSchedule(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("schedule %q:\nwant error %q\ngot        %v", tt.in, tt.want, err)
		}
	}
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want schema.Rate
		str  string
	}{
		{"50MiB/s", 50 << 20, "50MiB/s"},
		{"100MB/s", 100e6, "100MB/s"},
		{"1.5GiB/s", 3 << 29, "1536MiB/s"},
	} {
		var r schema.Rate
		if err := r.UnmarshalText([]byte(tc.in)); err != nil || r != tc.want || r.String() != tc.str {
			t.Errorf("Rate(%q) = %d %q, %v; want %d %q", tc.in, r, r.String(), err, tc.want, tc.str)
		}
	}
	for in, want := range map[string]string{
		"50MiB":  `"50MiB" is not a rate; write it like 50MiB/s or 100MB/s`,
		"fast/s": `"fast/s" is not a rate; write it like 50MiB/s or 100MB/s`,
		"10Mb/s": `"10Mb/s": unknown unit "Mb"; use KiB, MiB, GiB or KB, MB, GB (per second)`,
		"1KiB/s": `"1KiB/s": a bandwidth limit must be between 64KiB/s and any real link's speed`,
	} {
		var r schema.Rate
		if err := r.UnmarshalText([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("Rate(%q): got error %v, want %q", in, err, want)
		}
	}
}
