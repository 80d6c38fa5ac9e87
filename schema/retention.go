package schema

import (
	"fmt"
	"strconv"
	"strings"
)

// Retention says which snapshots to keep, in btrbk's preserve syntax:
// "24h 7d 4w 12m 2y" keeps the first snapshot of each of the last 24 hours,
// 7 days, 4 weeks, 12 months and 2 years. A count of * keeps every one of
// that kind ("*d": a daily for ever). Units left out keep none of that kind.
type Retention struct {
	// Hourly, Daily, Weekly, Monthly and Yearly are how many of each to keep;
	// -1 means all of them.
	Hourly, Daily, Weekly, Monthly, Yearly int
	raw                                    string
}

// All is the count that keeps every snapshot of a kind (written *).
const All = -1

// retentionWord splits one word of a retention, like 7d or *d, into its
// count (digits, or *) and its unit (h, d, w, m or y). It is the regular
// expression ^([0-9]+|\*)([hdwmy])$ written out: a spec of 1,000 shares
// has 2,000 retentions, and the regexp took a tenth of parsing it.
func retentionWord(w string) (count string, unit byte, ok bool) {
	if len(w) < 2 || !strings.ContainsRune("hdwmy", rune(w[len(w)-1])) {
		return "", 0, false
	}
	count, unit = w[:len(w)-1], w[len(w)-1]
	if count == "*" {
		return count, unit, true
	}
	for i := range len(count) {
		if count[i] < '0' || count[i] > '9' {
			return "", 0, false
		}
	}
	return count, unit, true
}

// ParseRetention parses a btrbk-style retention.
func ParseRetention(s string) (Retention, error) {
	var r Retention
	err := r.UnmarshalText([]byte(s))
	return r, err
}

// UnmarshalText parses a btrbk-style retention such as "24h 7d 4w".
func (r *Retention) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	words := strings.Fields(s)
	if len(words) == 0 {
		return fmt.Errorf("empty retention; write it like \"24h 7d 4w 12m\"")
	}
	var out Retention
	seen := map[byte]bool{}
	for _, w := range words {
		count, unit, ok := retentionWord(w)
		if !ok {
			return fmt.Errorf("%q: %q is not a count with a unit h, d, w, m or y (like 7d)", s, w)
		}
		if seen[unit] {
			return fmt.Errorf("%q: unit %q appears twice", s, string(unit))
		}
		seen[unit] = true
		n := All
		if count != "*" {
			v, err := strconv.Atoi(count)
			if err != nil || v > 100000 {
				return fmt.Errorf("%q: %q is too large", s, w)
			}
			if v == 0 {
				return fmt.Errorf("%q: %q keeps nothing; leave it out", s, w)
			}
			n = v
		}
		switch unit {
		case 'h':
			out.Hourly = n
		case 'd':
			out.Daily = n
		case 'w':
			out.Weekly = n
		case 'm':
			out.Monthly = n
		case 'y':
			out.Yearly = n
		}
	}
	out.raw = strings.Join(words, " ")
	*r = out
	return nil
}

// MarshalText writes the retention as it was written.
func (r Retention) MarshalText() ([]byte, error) { return []byte(r.raw), nil }

// String writes the retention as it was written.
func (r Retention) String() string { return r.raw }

// IsZero reports whether the retention was never set.
func (r Retention) IsZero() bool { return r.raw == "" }

func (Retention) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^\s*([0-9]+|\*)[hdwmy](\s+([0-9]+|\*)[hdwmy])*\s*$`}
}
