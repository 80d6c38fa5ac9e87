package schema

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// jsonSchemaer is implemented by the scalar types of the spec so that
// JSONSchema can describe them as strings with a pattern or an enum.
type jsonSchemaer interface {
	jsonSchema() map[string]any
}

// Duration is a length of time written as Go writes it: 30s, 1m30s, 250ms, 2h.
type Duration time.Duration

// UnmarshalText parses a positive duration.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration; write it like 30s, 1m30s or 250ms", s)
	}
	if v <= 0 {
		return fmt.Errorf("%q: the duration must be positive", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in its shortest form (1m, not 1m0s).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String writes the duration in its shortest form (1m, not 1m0s).
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func (Duration) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
}

// Quota is a size limit in bytes, written with a unit: 200GiB, 1.5TiB (binary)
// or 500GB (decimal). The zero Quota means no limit.
type Quota uint64

var quotaUnits = []struct {
	name string
	size float64
}{
	// Largest first: String writes the first that divides the quota exactly.
	{"PiB", 1 << 50}, {"PB", 1e15}, {"TiB", 1 << 40}, {"TB", 1e12},
	{"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6},
	{"KiB", 1 << 10}, {"KB", 1e3}, {"kB", 1e3},
	{"B", 1},
}

var quotaRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// MinQuota is the smallest quota accepted; btrfs cannot hold a share in less.
const MinQuota = 16 << 20

// UnmarshalText parses a size with a unit.
func (q *Quota) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	m := quotaRE.FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("%q is not a size; write it like 200GiB or 500GB", s)
	}
	unit := m[2]
	if unit == "" {
		return fmt.Errorf("%q has no unit; write it like %sGiB (binary) or %sGB (decimal)", s, m[1], m[1])
	}
	mult := unitSize(unit)
	if mult == 0 {
		switch strings.ToUpper(unit) {
		case "K", "M", "G", "T", "P":
			u := strings.ToUpper(unit)
			return fmt.Errorf("%q: unit %q is ambiguous; write %s%siB (binary) or %s%sB (decimal)", s, unit, m[1], u, m[1], u)
		}
		return fmt.Errorf("%q: unknown unit %q; use B, KiB, MiB, GiB, TiB, PiB or KB, MB, GB, TB, PB", s, unit)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return fmt.Errorf("%q is not a size: %w", s, err)
	}
	v := n * mult
	if v >= math.MaxInt64 {
		return fmt.Errorf("%q is larger than any filesystem", s)
	}
	if v < MinQuota {
		if v == 0 {
			return fmt.Errorf("%q: a quota of zero holds nothing; omit quota for no limit", s)
		}
		return fmt.Errorf("%q is below the smallest quota, 16MiB", s)
	}
	*q = Quota(math.Round(v))
	return nil
}

// unitSize is the size of a quota unit such as GiB, or 0 for no such unit.
func unitSize(unit string) float64 {
	for _, u := range quotaUnits {
		if u.name == unit {
			return u.size
		}
	}
	return 0
}

// MarshalText writes the quota in the largest unit that divides it exactly.
func (q Quota) MarshalText() ([]byte, error) { return []byte(q.String()), nil }

// String writes the quota in the largest unit that divides it exactly.
func (q Quota) String() string {
	for _, u := range quotaUnits {
		if uint64(q)%uint64(u.size) == 0 && uint64(q) >= uint64(u.size) {
			return strconv.FormatUint(uint64(q)/uint64(u.size), 10) + u.name
		}
	}
	return strconv.FormatUint(uint64(q), 10) + "B"
}

func (Quota) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^[0-9]+(\.[0-9]+)?\s*(B|KiB|MiB|GiB|TiB|PiB|kB|KB|MB|GB|TB|PB)$`}
}

// Target names a replication target, written appliance/pool.
type Target struct {
	// Appliance is the appliance that receives the replica.
	Appliance string
	// Pool is that appliance's pool the replica lives in.
	Pool string
}

// UnmarshalText parses appliance/pool.
func (t *Target) UnmarshalText(b []byte) error {
	s := string(b)
	a, p, ok := strings.Cut(s, "/")
	if !ok || a == "" || p == "" || strings.Contains(p, "/") {
		return fmt.Errorf("%q is not a target; write it as APPLIANCE/POOL, like nas2/tank", s)
	}
	t.Appliance, t.Pool = a, p
	return nil
}

// MarshalText writes appliance/pool.
func (t Target) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// String writes appliance/pool.
func (t Target) String() string {
	if t.Appliance == "" && t.Pool == "" {
		return ""
	}
	return t.Appliance + "/" + t.Pool
}

func (Target) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^[^/]+/[^/]+$`}
}

// enum parses s as one of the allowed words.
func enum(s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	return fmt.Errorf("%q is not allowed; use %s", s, orList(allowed))
}

func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func enumSchema(allowed ...string) map[string]any {
	return map[string]any{"type": "string", "enum": allowed}
}

// Role is what an appliance does in the fleet.
type Role string

// The roles of an appliance.
const (
	RoleStorage Role = "storage" // holds pools and shares, votes
	RoleWitness Role = "witness" // votes in the quorum, holds no data
)

// UnmarshalText accepts storage or witness.
func (r *Role) UnmarshalText(b []byte) error {
	if err := enum(string(b), string(RoleStorage), string(RoleWitness)); err != nil {
		return err
	}
	*r = Role(b)
	return nil
}

func (Role) jsonSchema() map[string]any { return enumSchema(string(RoleStorage), string(RoleWitness)) }

// State says whether a share should exist.
type State string

// The states of a share.
const (
	StatePresent State = "present" // the share exists
	StateAbsent  State = "absent"  // the share is deleted
)

// UnmarshalText accepts present or absent.
func (s *State) UnmarshalText(b []byte) error {
	if err := enum(string(b), string(StatePresent), string(StateAbsent)); err != nil {
		return err
	}
	*s = State(b)
	return nil
}

func (State) jsonSchema() map[string]any {
	return enumSchema(string(StatePresent), string(StateAbsent))
}

// Failover says what the quorum does when a share's appliance is gone.
type Failover string

// The failover modes of a share.
const (
	FailoverAuto   Failover = "auto"   // fail over to the replica
	FailoverManual Failover = "manual" // report, wait for `fleetctl failover`
	FailoverOff    Failover = "off"    // nothing
)

// UnmarshalText accepts auto, manual or off.
func (f *Failover) UnmarshalText(b []byte) error {
	if err := enum(string(b), string(FailoverAuto), string(FailoverManual), string(FailoverOff)); err != nil {
		return err
	}
	*f = Failover(b)
	return nil
}

func (Failover) jsonSchema() map[string]any {
	return enumSchema(string(FailoverAuto), string(FailoverManual), string(FailoverOff))
}

// Failback says whether shares return to their original appliance.
type Failback string

// The failback modes of the witness policy.
const (
	FailbackManual Failback = "manual" // roles stay until `fleetctl failover`
	FailbackAuto   Failback = "auto"   // roles return once the original has caught up
)

// UnmarshalText accepts manual or auto.
func (f *Failback) UnmarshalText(b []byte) error {
	if err := enum(string(b), string(FailbackManual), string(FailbackAuto)); err != nil {
		return err
	}
	*f = Failback(b)
	return nil
}

func (Failback) jsonSchema() map[string]any {
	return enumSchema(string(FailbackManual), string(FailbackAuto))
}

// Compression is how a replication stream is compressed on the wire.
type Compression string

// The compressions of a replication stream.
const (
	CompressionNone Compression = "none" // the stream as btrfs send writes it
	CompressionZstd Compression = "zstd" // zstd, for slow links
)

// UnmarshalText accepts none or zstd.
func (c *Compression) UnmarshalText(b []byte) error {
	if err := enum(string(b), string(CompressionNone), string(CompressionZstd)); err != nil {
		return err
	}
	*c = Compression(b)
	return nil
}

func (Compression) jsonSchema() map[string]any {
	return enumSchema(string(CompressionNone), string(CompressionZstd))
}

// Rate is a data rate in bytes per second, written as a size per second:
// 50MiB/s, 100MB/s. The zero Rate means no limit.
type Rate uint64

// MinRate is the slowest rate accepted: below it a replication of any real
// share would never finish.
const MinRate = 64 << 10

// UnmarshalText parses a size followed by /s.
func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	size, ok := strings.CutSuffix(s, "/s")
	if !ok {
		return fmt.Errorf("%q is not a rate; write it like 50MiB/s or 100MB/s", s)
	}
	m := quotaRE.FindStringSubmatch(strings.TrimSpace(size))
	if m == nil || m[2] == "" {
		return fmt.Errorf("%q is not a rate; write it like 50MiB/s or 100MB/s", s)
	}
	mult := unitSize(m[2])
	if mult == 0 {
		return fmt.Errorf("%q: unknown unit %q; use KiB, MiB, GiB or KB, MB, GB (per second)", s, m[2])
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return fmt.Errorf("%q is not a rate: %w", s, err)
	}
	v := n * mult
	if v < MinRate || v >= math.MaxInt64 {
		return fmt.Errorf("%q: a bandwidth limit must be between 64KiB/s and any real link's speed", s)
	}
	*r = Rate(math.Round(v))
	return nil
}

// MarshalText writes the rate like 50MiB/s.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String writes the rate like 50MiB/s.
func (r Rate) String() string {
	if r == 0 {
		return ""
	}
	return Quota(r).String() + "/s"
}

func (Rate) jsonSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^[0-9]+(\.[0-9]+)?\s*(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)/s$`}
}
