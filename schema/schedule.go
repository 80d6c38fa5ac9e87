package schema

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MinInterval is the shortest interval an "every" schedule may have.
const MinInterval = time.Second

// Schedule says when something runs: "every DURATION" (at multiples of the
// duration since the Unix epoch, so every 10m runs at :00, :10, …), a 5-field
// cron line "MIN HOUR DOM MON DOW", or one of @hourly, @daily, @weekly,
// @monthly, @yearly. Cron lines are read in the agent's local time zone.
type Schedule struct {
	raw   string
	every time.Duration
	cron  *cron
}

// cron is a parsed 5-field cron line; each field is a bit set of allowed values.
type cron struct {
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
}

var cronMacros = map[string]string{
	"@hourly":   "0 * * * *",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@weekly":   "0 0 * * 0",
	"@monthly":  "0 0 1 * *",
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
}

var cronFields = []struct {
	name     string
	min, max int
	names    []string
}{
	{"minute", 0, 59, nil},
	{"hour", 0, 23, nil},
	{"day of month", 1, 31, nil},
	{"month", 1, 12, []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{"day of week", 0, 7, []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// ParseSchedule parses a schedule.
func ParseSchedule(s string) (Schedule, error) {
	var sc Schedule
	err := sc.UnmarshalText([]byte(s))
	return sc, err
}

// UnmarshalText parses "every DURATION", a cron line or a cron macro.
func (sc *Schedule) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return fmt.Errorf("empty schedule; write it like \"every 10m\" or \"0 * * * *\"")
	}
	if rest, ok := strings.CutPrefix(s, "every "); ok {
		rest = strings.TrimSpace(rest)
		d, err := time.ParseDuration(rest)
		if err != nil {
			return fmt.Errorf("%q: %q is not a duration; write it like \"every 10m\" or \"every 1h\"", s, rest)
		}
		if d < MinInterval {
			return fmt.Errorf("%q: the interval must be at least %v", s, MinInterval)
		}
		*sc = Schedule{raw: "every " + Duration(d).String(), every: d}
		return nil
	}
	line := s
	if m, ok := cronMacros[strings.ToLower(s)]; ok {
		line = m
	} else if strings.HasPrefix(s, "@") {
		return fmt.Errorf("%q: unknown macro; use @hourly, @daily, @weekly, @monthly or @yearly", s)
	}
	fields := strings.Fields(line)
	if len(fields) != 5 {
		return fmt.Errorf("%q: a cron line has 5 fields (minute hour day-of-month month day-of-week), found %d; or write \"every 10m\"", s, len(fields))
	}
	var c cron
	sets := []*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, f := range fields {
		set, err := parseCronField(f, i)
		if err != nil {
			return fmt.Errorf("%q: %s field %q: %w", s, cronFields[i].name, f, err)
		}
		*sets[i] = set
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow |= 1
	}
	c.domStar = fields[2] == "*" || strings.HasPrefix(fields[2], "*/")
	c.dowStar = fields[4] == "*" || strings.HasPrefix(fields[4], "*/")
	*sc = Schedule{raw: s, cron: &c}
	return nil
}

func parseCronField(f string, idx int) (uint64, error) {
	spec := cronFields[idx]
	var set uint64
	for _, part := range strings.Split(f, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("step %q must be a positive number", stepText)
			}
			step = n
		}
		lo, hi := spec.min, spec.max
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = cronValue(a, idx); err != nil {
				return 0, err
			}
			if hi, err = cronValue(b, idx); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %s runs backwards", rng)
			}
		default:
			v, err := cronValue(rng, idx)
			if err != nil {
				return 0, err
			}
			lo, hi = v, v
			if hasStep {
				hi = spec.max
			}
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << uint(v)
		}
	}
	return set, nil
}

func cronValue(s string, idx int) (int, error) {
	spec := cronFields[idx]
	for i, n := range spec.names {
		if strings.EqualFold(s, n) {
			return i + spec.min, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		if spec.names != nil {
			return 0, fmt.Errorf("%q is neither a number nor a name like %s", s, spec.names[0])
		}
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < spec.min || v > spec.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", v, spec.min, spec.max)
	}
	return v, nil
}

// MarshalText writes the schedule as it was written.
func (sc Schedule) MarshalText() ([]byte, error) { return []byte(sc.raw), nil }

// String writes the schedule as it was written.
func (sc Schedule) String() string { return sc.raw }

// IsZero reports whether the schedule was never set.
func (sc Schedule) IsZero() bool { return sc.raw == "" }

// Interval returns the interval of an "every" schedule, or 0 for a cron line.
func (sc Schedule) Interval() time.Duration { return sc.every }

// Next returns the first time the schedule fires strictly after t, or the
// zero time if it never fires within five years (like "0 0 31 2 *").
func (sc Schedule) Next(t time.Time) time.Time {
	switch {
	case sc.every > 0:
		n := t.UnixNano()/int64(sc.every) + 1
		return time.Unix(0, n*int64(sc.every)).In(t.Location())
	case sc.cron != nil:
		return sc.cron.next(t)
	}
	return time.Time{}
}

func (c *cron) next(t time.Time) time.Time {
	loc := t.Location()
	t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, loc).Add(time.Minute)
	limit := t.Year() + 5
	for t.Year() <= limit {
		if c.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
			continue
		}
		if !c.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
			continue
		}
		if c.hour&(1<<uint(t.Hour())) == 0 {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
			continue
		}
		if c.minute&(1<<uint(t.Minute())) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

// dayMatches follows Vixie cron: when both day fields are restricted, either
// may match.
func (c *cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	if !c.domStar && !c.dowStar {
		return dom || dow
	}
	return dom && dow
}

func (Schedule) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^(every [0-9].*|@(hourly|daily|midnight|weekly|monthly|yearly|annually)|\S+\s+\S+\s+\S+\s+\S+\s+\S+)$`}
}
