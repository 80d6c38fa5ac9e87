package schema_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// acceptedFiles lists the spec files that must be valid: the example in the
// repository root and every examples/*.yaml (there may be none).
func acceptedFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		t.Fatalf("glob examples: %v", err)
	}
	return append([]string{"../fleet.yaml.example"}, files...)
}

// mustParse parses a spec that must be valid.
func mustParse(t testing.TB, file string, data []byte) *schema.Spec {
	t.Helper()
	s, err := schema.Parse(file, data)
	if err != nil {
		t.Fatalf("Parse(%s) failed, want no error; got:\n%v", file, err)
	}
	return s
}

// errorLines parses src and returns its problems one per line; it fails the
// test if Parse accepts src or returns something other than Errors.
func errorLines(t *testing.T, src []byte) []string {
	t.Helper()
	_, err := schema.Parse("fleet.yaml", src)
	if err == nil {
		t.Fatalf("Parse accepted the spec, want an error")
	}
	var errs schema.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse returned %T (%v), want schema.Errors", err, err)
	}
	if len(errs) == 0 {
		t.Fatalf("Parse returned an empty Errors")
	}
	return strings.Split(err.Error(), "\n")
}

func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("wrong errors\nwant:\n%s\ngot:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}

func TestParseAcceptedFiles(t *testing.T) {
	for _, file := range acceptedFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			s := mustParse(t, file, data)
			if s.Version != schema.Version {
				t.Errorf("version is %d, want %d", s.Version, schema.Version)
			}
			if len(s.Appliances) == 0 {
				t.Errorf("no appliances decoded")
			}
			// What Parse returns must validate on its own too.
			if err := s.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

// The example is what users copy: pin down that it says what its comments say.
func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../fleet.yaml.example")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	s := mustParse(t, "fleet.yaml.example", data)
	if s.Fleet != "office" {
		t.Errorf("fleet is %q, want office", s.Fleet)
	}
	if len(s.Appliances) != 3 || s.Appliance("witness") == nil || s.Appliance("witness").Role != schema.RoleWitness {
		t.Errorf("want appliances nas1, nas2 and a witness appliance, got %+v", s.Appliances)
	}
	p := s.Share("projects")
	if p == nil || p.Replication == nil {
		t.Fatalf("share projects with replication missing: %+v", s.Shares)
	}
	if p.Replication.To != (schema.Target{Appliance: "nas2", Pool: "tank"}) {
		t.Errorf("projects replicates to %v, want nas2/tank", p.Replication.To)
	}
	if p.Replication.Schedule.Interval() != 10*time.Minute {
		t.Errorf("projects replicates every %v, want 10m", p.Replication.Schedule.Interval())
	}
	if p.Failover != schema.FailoverAuto || p.Quota != 200<<30 {
		t.Errorf("projects: failover %q quota %v, want auto and 200GiB", p.Failover, p.Quota)
	}
	sc := s.Share("scratch")
	if sc == nil || sc.Replication != nil || sc.Failover != schema.FailoverOff {
		t.Errorf("scratch: want a share without replication and failover off, got %+v", sc)
	}
}

func TestParseAccepted(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, s *schema.Spec)
	}{
		{
			name: "minimal",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
`,
			check: func(t *testing.T, s *schema.Spec) {
				if len(s.Appliances) != 1 || s.Appliances[0].Name != "nas1" || s.Appliances[0].Address != "nas1:7400" {
					t.Fatalf("want one appliance nas1 at nas1:7400, got %+v", s.Appliances)
				}
				if s.Appliances[0].Role != schema.RoleStorage {
					t.Errorf("role is %q, want the default storage", s.Appliances[0].Role)
				}
				if s.Fleet != "fleet" {
					t.Errorf("fleet is %q, want the default fleet", s.Fleet)
				}
				if len(s.Shares) != 0 {
					t.Errorf("want no shares, got %+v", s.Shares)
				}
			},
		},
		{
			name: "witness defaults",
			src: `version: 1
witness:
  failover_after: 1m
appliances:
  - name: nas1
    address: nas1:7400
  - name: tiebreak
    address: 10.0.0.9:7400
    role: witness
`,
			check: func(t *testing.T, s *schema.Spec) {
				w := s.Witness
				if w.FailoverAfter != schema.Duration(time.Minute) {
					t.Errorf("failover_after is %v, want the written 1m", w.FailoverAfter)
				}
				if w.FenceAfter != schema.Duration(15*time.Second) || w.DegradedLatency != schema.Duration(250*time.Millisecond) || w.Failback != schema.FailbackManual {
					t.Errorf("want defaults fence_after 15s, degraded_latency 250ms, failback manual; got %+v", w)
				}
				if s.Appliance("tiebreak").Role != schema.RoleWitness {
					t.Errorf("tiebreak role is %q, want witness", s.Appliance("tiebreak").Role)
				}
			},
		},
		{
			name: "cron schedules",
			src: `version: 1
appliances:
  - name: nas1
    address: "[fd00::1]:7400"
    pools:
      - name: tank
        path: /mnt/tank
shares:
  - name: nightly
    appliance: nas1
    pool: tank
    snapshots:
      schedule: "0 2 * * *"
      retention: 7d
  - name: quarter
    appliance: nas1
    pool: tank
    snapshots:
      schedule: "*/15 8-18 * * mon-fri"
      retention: 24h 7d
      keep_min: 3
  - name: Mixed_Case.v2
    appliance: nas1
    pool: tank
    snapshots:
      schedule: 30 4 1,15 jan,jul SUN
      retention: 12m 2y
`,
			check: func(t *testing.T, s *schema.Spec) {
				want := map[string]string{
					"nightly":       "0 2 * * *",
					"quarter":       "*/15 8-18 * * mon-fri",
					"Mixed_Case.v2": "30 4 1,15 jan,jul SUN",
				}
				for name, sched := range want {
					sh := s.Share(name)
					if sh == nil || sh.Snapshots == nil {
						t.Fatalf("share %s with snapshots missing", name)
					}
					if got := sh.Snapshots.Schedule.String(); got != sched {
						t.Errorf("share %s: schedule %q, want %q", name, got, sched)
					}
					if sh.Snapshots.Schedule.Interval() != 0 {
						t.Errorf("share %s: a cron schedule has interval %v, want 0", name, sh.Snapshots.Schedule.Interval())
					}
				}
				if k := s.Share("quarter").Snapshots.KeepMin; k != 3 {
					t.Errorf("keep_min is %d, want the written 3", k)
				}
				if k := s.Share("nightly").Snapshots.KeepMin; k != 1 {
					t.Errorf("keep_min is %d, want the default 1", k)
				}
			},
		},
		{
			name: "@daily",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - name: tank
        path: /mnt/tank
shares:
  - name: home
    appliance: nas1
    pool: tank
    snapshots:
      schedule: "@daily"
      retention: 14d
`,
			check: func(t *testing.T, s *schema.Spec) {
				sc := s.Share("home").Snapshots.Schedule
				from := time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC)
				if got, want := sc.Next(from), time.Date(2024, 3, 6, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
					t.Errorf("@daily after %v fires at %v, want %v", from, got, want)
				}
				if sc.String() != "@daily" {
					t.Errorf("schedule written back as %q, want @daily", sc.String())
				}
			},
		},
		{
			name: "keep dailies for ever",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - name: tank
        path: /mnt/tank
  - name: nas2
    address: nas2:7400
    pools:
      - name: backup
        path: /srv/backup
shares:
  - name: archive
    appliance: nas1
    pool: tank
    quota: 1.5TiB
    replication:
      to: nas2/backup
      schedule: every 1h
      retention: "*d 12m"
`,
			check: func(t *testing.T, s *schema.Spec) {
				r := s.Share("archive").Replication
				if r.Retention.Daily != schema.All || r.Retention.Monthly != 12 || r.Retention.Hourly != 0 {
					t.Errorf("retention %+v, want every daily and 12 monthlies", r.Retention)
				}
				if r.KeepMin != 1 {
					t.Errorf("keep_min is %d, want the default 1", r.KeepMin)
				}
				if f := s.Share("archive").Failover; f != schema.FailoverManual {
					t.Errorf("failover is %q, want the default manual for a replicated share", f)
				}
				if q := s.Share("archive").Quota; q != 3<<39 {
					t.Errorf("quota is %d bytes, want 1.5TiB = %d", q, uint64(3<<39))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, "fleet.yaml", []byte(tt.src))
			tt.check(t, s)
		})
	}
}

func TestParseRejected(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown field, did you mean",
			src: `version: 1
appliances:
  - name: nas1
    adress: nas1:7400
`,
			want: []string{
				`fleet.yaml:3:5: appliances[0].address: missing; this field is required`,
				`fleet.yaml:4:5: appliances[0].adress: unknown field "adress" (did you mean "address"?)`,
			},
		},
		{
			name: "unknown field, no suggestion",
			src: `version: 1
colour: blue
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:2:1: colour: unknown field "colour"; known fields here: version, fleet, witness, appliances, shares`,
			},
		},
		{
			name: "unknown field in replication",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
  - name: nas2
    address: nas2:7400
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - name: data
    appliance: nas1
    pool: tank
    replication:
      to: nas2/tank
      schedule: every 10m
      retention: 7d
      keepmin: 2
      compress: zstd
`,
			want: []string{
				`fleet.yaml:19:7: shares[0].replication.keepmin: unknown field "keepmin" (did you mean "keep_min"?)`,
				`fleet.yaml:20:7: shares[0].replication.compress: unknown field "compress"; known fields here: to, schedule, retention, keep_min, compression, bandwidth_limit`,
			},
		},
		{
			name: "duplicate key",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    name: nas2
`,
			want: []string{
				`fleet.yaml:5:5: appliances[0].name: set twice (first at line 3)`,
			},
		},
		{
			name: "duplicate appliance name",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
  - name: nas1
    address: nas2:7400
`,
			want: []string{
				`fleet.yaml:5:11: appliances[1].name: appliance "nas1" is already defined at appliances[0]`,
			},
		},
		{
			name: "duplicate share name",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - {name: data, appliance: nas1, pool: tank}
  - {name: data, appliance: nas1, pool: tank}
`,
			want: []string{
				`fleet.yaml:9:12: shares[1].name: share "data" is already defined at shares[0]`,
			},
		},
		{
			name: "dangling references",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
      - {name: fast, path: /mnt/fast}
  - name: nas2
    address: nas2:7400
shares:
  - {name: a, appliance: nas9, pool: tank}
  - {name: b, appliance: nas1, pool: tnak}
  - {name: c, appliance: nas2, pool: tank}
`,
			want: []string{
				`fleet.yaml:11:26: shares[0].appliance: appliance "nas9" is not defined`,
				`fleet.yaml:12:38: shares[1].pool: appliance "nas1" has no pool "tnak" (it has tank, fast)`,
				`fleet.yaml:13:38: shares[2].pool: appliance "nas2" has no pool "tank" (it has no pools)`,
			},
		},
		{
			name: "share names unsafe as subvolume names",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - {name: "..", appliance: nas1, pool: tank}
  - {name: a/b, appliance: nas1, pool: tank}
  - {name: .hidden, appliance: nas1, pool: tank}
  - {name: -x, appliance: nas1, pool: tank}
`,
			want: []string{
				`fleet.yaml:8:12: shares[0].name: ".." is not a valid share name (it names a subvolume): letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64`,
				`fleet.yaml:9:12: shares[1].name: "a/b" is not a valid share name (it names a subvolume): letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64`,
				`fleet.yaml:10:12: shares[2].name: ".hidden" is not a valid share name (it names a subvolume): letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64`,
				`fleet.yaml:11:12: shares[3].name: "-x" is not a valid share name (it names a subvolume): letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64`,
			},
		},
		{
			name: "bad names",
			src: `version: 1
fleet: Office
appliances:
  - name: NAS1
    address: nas1:7400
  - name: nas-
    address: nas2:7400
    pools:
      - {name: .tank, path: /mnt/tank}
`,
			want: []string{
				`fleet.yaml:2:8: fleet: "Office" is not a valid fleet name: lowercase letters, digits and '-', at most 63`,
				`fleet.yaml:4:11: appliances[0].name: "NAS1" is not a valid appliance name: lowercase letters, digits and '-', at most 63, not starting or ending with '-'`,
				`fleet.yaml:6:11: appliances[1].name: "nas-" is not a valid appliance name: lowercase letters, digits and '-', at most 63, not starting or ending with '-'`,
				`fleet.yaml:9:16: appliances[1].pools[0].name: ".tank" is not a valid pool name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64`,
			},
		},
		{
			name: "bad durations",
			src: `version: 1
witness:
  failover_after: 30 seconds
  fence_after: -5s
  degraded_latency: 0s
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:3:19: witness.failover_after: "30 seconds" is not a duration; write it like 30s, 1m30s or 250ms`,
				`fleet.yaml:4:16: witness.fence_after: "-5s": the duration must be positive`,
				`fleet.yaml:5:21: witness.degraded_latency: "0s": the duration must be positive`,
			},
		},
		{
			name: "bad schedules",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - name: a
    appliance: nas1
    pool: tank
    snapshots: {schedule: "0 25 * * *", retention: 7d}
  - name: b
    appliance: nas1
    pool: tank
    snapshots: {schedule: "0 2 * *", retention: 7d}
  - name: c
    appliance: nas1
    pool: tank
    snapshots: {schedule: "@fortnightly", retention: 7d}
  - name: d
    appliance: nas1
    pool: tank
    snapshots: {schedule: every 0s, retention: 7d}
  - name: e
    appliance: nas1
    pool: tank
    snapshots: {schedule: "*/0 * * * *", retention: 7d}
  - name: f
    appliance: nas1
    pool: tank
    snapshots: {schedule: "0 0 * * funday", retention: 7d}
  - name: g
    appliance: nas1
    pool: tank
    snapshots: {schedule: "0 0 5-1 * *", retention: 7d}
  - name: h
    appliance: nas1
    pool: tank
    snapshots: {schedule: every often, retention: 7d}
  - name: i
    appliance: nas1
    pool: tank
    snapshots: {schedule: "", retention: 7d}
`,
			want: []string{
				`fleet.yaml:11:27: shares[0].snapshots.schedule: "0 25 * * *": hour field "25": 25 is out of range 0-23`,
				`fleet.yaml:15:27: shares[1].snapshots.schedule: "0 2 * *": a cron line has 5 fields (minute hour day-of-month month day-of-week), found 4; or write "every 10m"`,
				`fleet.yaml:19:27: shares[2].snapshots.schedule: "@fortnightly": unknown macro; use @hourly, @daily, @weekly, @monthly or @yearly`,
				`fleet.yaml:23:27: shares[3].snapshots.schedule: "every 0s": the interval must be at least 1s`,
				`fleet.yaml:27:27: shares[4].snapshots.schedule: "*/0 * * * *": minute field "*/0": step "0" must be a positive number`,
				`fleet.yaml:31:27: shares[5].snapshots.schedule: "0 0 * * funday": day of week field "funday": "funday" is neither a number nor a name like sun`,
				`fleet.yaml:35:27: shares[6].snapshots.schedule: "0 0 5-1 * *": day of month field "5-1": range 5-1 runs backwards`,
				`fleet.yaml:39:27: shares[7].snapshots.schedule: "every often": "often" is not a duration; write it like "every 10m" or "every 1h"`,
				`fleet.yaml:43:27: shares[8].snapshots.schedule: empty schedule; write it like "every 10m" or "0 * * * *"`,
			},
		},
		{
			name: "bad retentions",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - name: a
    appliance: nas1
    pool: tank
    snapshots: {schedule: "@daily", retention: 0d}
  - name: b
    appliance: nas1
    pool: tank
    snapshots: {schedule: "@daily", retention: 7d 3d}
  - name: c
    appliance: nas1
    pool: tank
    snapshots: {schedule: "@daily", retention: 7x}
  - name: d
    appliance: nas1
    pool: tank
    snapshots: {schedule: "@daily", retention: 7}
`,
			want: []string{
				`fleet.yaml:11:48: shares[0].snapshots.retention: "0d": "0d" keeps nothing; leave it out`,
				`fleet.yaml:15:48: shares[1].snapshots.retention: "7d 3d": unit "d" appears twice`,
				`fleet.yaml:19:48: shares[2].snapshots.retention: "7x": "7x" is not a count with a unit h, d, w, m or y (like 7d)`,
				`fleet.yaml:23:48: shares[3].snapshots.retention: "7": "7" is not a count with a unit h, d, w, m or y (like 7d)`,
			},
		},
		{
			name: "bad quotas",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - {name: a, appliance: nas1, pool: tank, quota: 200}
  - {name: b, appliance: nas1, pool: tank, quota: 1G}
  - {name: c, appliance: nas1, pool: tank, quota: 1XB}
  - {name: d, appliance: nas1, pool: tank, quota: 0GiB}
  - {name: e, appliance: nas1, pool: tank, quota: 1MiB}
  - {name: f, appliance: nas1, pool: tank, quota: lots}
  - {name: g, appliance: nas1, pool: tank, quota: 99999999PiB}
`,
			want: []string{
				`fleet.yaml:8:51: shares[0].quota: "200" has no unit; write it like 200GiB (binary) or 200GB (decimal)`,
				`fleet.yaml:9:51: shares[1].quota: "1G": unit "G" is ambiguous; write 1GiB (binary) or 1GB (decimal)`,
				`fleet.yaml:10:51: shares[2].quota: "1XB": unknown unit "XB"; use B, KiB, MiB, GiB, TiB, PiB or KB, MB, GB, TB, PB`,
				`fleet.yaml:11:51: shares[3].quota: "0GiB": a quota of zero holds nothing; omit quota for no limit`,
				`fleet.yaml:12:51: shares[4].quota: "1MiB" is below the smallest quota, 16MiB`,
				`fleet.yaml:13:51: shares[5].quota: "lots" is not a size; write it like 200GiB or 500GB`,
				`fleet.yaml:14:51: shares[6].quota: "99999999PiB" is larger than any filesystem`,
			},
		},
		{
			name: "bad replication targets",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: tank, path: /mnt/tank}
      - {name: fast, path: /mnt/fast}
  - name: nas2
    address: nas2:7400
  - name: w
    address: w:7400
    role: witness
shares:
  - name: a
    appliance: nas1
    pool: tank
    replication: {to: nas1/tank, schedule: every 10m, retention: 7d}
  - name: b
    appliance: nas1
    pool: tank
    replication: {to: nas1/fast, schedule: every 10m, retention: 7d}
    failover: auto
  - name: c
    appliance: nas1
    pool: tank
    replication: {to: w/tank, schedule: every 10m, retention: 7d}
  - name: d
    appliance: nas1
    pool: tank
    replication: {to: nas2, schedule: every 10m, retention: 7d}
  - name: e
    appliance: w
    pool: tank
`,
			want: []string{
				`fleet.yaml:17:23: shares[0].replication.to: replication to the share's own pool nas1/tank protects nothing; name another appliance's pool`,
				`fleet.yaml:21:23: shares[1].replication.to: failover: auto needs the replica on another appliance, not on "nas1" itself`,
				`fleet.yaml:26:23: shares[2].replication.to: appliance "w" is a witness and holds no data`,
				`fleet.yaml:30:23: shares[3].replication.to: "nas2" is not a target; write it as APPLIANCE/POOL, like nas2/tank`,
				`fleet.yaml:32:16: shares[4].appliance: appliance "w" is a witness and holds no data`,
			},
		},
		{
			name: "witness appliance with pools",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
  - name: w
    address: w:7400
    role: witness
    pools:
      - {name: tank, path: /mnt/tank}
`,
			want: []string{
				`fleet.yaml:9:7: appliances[1].pools: a witness appliance holds no data; remove its pools or make it role: storage`,
			},
		},
		{
			name: "fence_after too close to failover_after",
			src: `version: 1
witness:
  failover_after: 20s
  fence_after: 16s
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:4:16: witness.fence_after: fence_after 16s must be shorter than failover_after 20s by at least 5s (max(5s, failover_after/4)), so a cut-off appliance is read-only before its replica is promoted; use at most 15s`,
			},
		},
		{
			name: "default fence_after too close to a short failover_after",
			src: `version: 1
witness:
  failover_after: 10s
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:3:3: witness.fence_after: fence_after 15s must be shorter than failover_after 10s by at least 5s (max(5s, failover_after/4)), so a cut-off appliance is read-only before its replica is promoted; use at most 5s`,
			},
		},
		{
			name: "fence margin of a long failover_after is a quarter",
			src: `version: 1
witness:
  failover_after: 2m
  fence_after: 91s
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:4:16: witness.fence_after: fence_after 1m31s must be shorter than failover_after 2m by at least 30s (max(5s, failover_after/4)), so a cut-off appliance is read-only before its replica is promoted; use at most 1m30s`,
			},
		},
		{
			name: "failover_after too short for any fence_after",
			src: `version: 1
witness:
  failover_after: 4s
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:3:19: witness.failover_after: failover_after 4s leaves no room for fence_after, which must be shorter by at least 5s (max(5s, failover_after/4)); make failover_after longer than 5s`,
			},
		},
		{
			name: "degraded_latency not below fence_after",
			src: `version: 1
witness:
  fence_after: 3s
  degraded_latency: 3s
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:4:21: witness.degraded_latency: degraded_latency 3s must be shorter than fence_after 3s`,
			},
		},
		{
			// A renewal a little late must not fence a share on a
			// healthy fleet: fence_after is at least three renewals.
			name: "fence_after at the renewal interval",
			src: `version: 1
witness:
  failover_after: 8s
  fence_after: 1s
  degraded_latency: 100ms
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:4:16: witness.fence_after: fence_after 1s is shorter than 3s, three lease renewals (one every 1s): a renewal answered a little late would fence a share on a healthy fleet; use at least 3s`,
			},
		},
		{
			name: "fence_after below the renewal interval",
			src: `version: 1
witness:
  failover_after: 5500ms
  fence_after: 500ms
  degraded_latency: 100ms
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:4:16: witness.fence_after: fence_after 500ms is shorter than 3s, three lease renewals (one every 1s): a renewal answered a little late would fence a share on a healthy fleet; use at least 3s`,
			},
		},
		{
			name: "failover without replication",
			src: `version: 1
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas2, address: "nas2:7400"}
  - {name: nas3, address: "nas3:7400"}
shares:
  - {name: a, appliance: nas1, pool: tank, failover: auto}
  - {name: b, appliance: nas1, pool: tank, failover: manual}
  - {name: c, appliance: nas1, pool: tank, failover: off}
`,
			want: []string{
				`fleet.yaml:7:54: shares[0].failover: failover: auto needs replication; add replication: or write failover: off`,
				`fleet.yaml:8:54: shares[1].failover: failover: manual needs replication; add replication: or write failover: off`,
			},
		},
		{
			name: "failover auto with two appliances",
			src: `version: 1
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas2, address: "nas2:7400", pools: [{name: tank, path: /mnt/tank}]}
shares:
  - name: a
    appliance: nas1
    pool: tank
    replication: {to: nas2/tank, schedule: every 10m, retention: 7d}
    failover: auto
`,
			want: []string{
				`fleet.yaml:10:15: shares[0].failover: failover: auto needs at least 3 appliances so a quorum survives losing one; the fleet has 2 (add a witness appliance)`,
			},
		},
		{
			name: "missing required fields",
			src: `fleet: office
appliances:
  - address: nas1:7400
  - name: nas2
    pools:
      - name: tank
shares:
  - name: a
    appliance: nas2
    pool: tank
    replication:
      keep_min: 2
  - name: b
    appliance: nas2
    snapshots: {}
`,
			want: []string{
				`fleet.yaml:1:1: version: missing; this field is required`,
				`fleet.yaml:3:5: appliances[0].name: missing; this field is required`,
				`fleet.yaml:4:5: appliances[1].address: missing; this field is required`,
				`fleet.yaml:6:9: appliances[1].pools[0].path: missing; this field is required`,
				`fleet.yaml:12:7: shares[0].replication.to: missing; this field is required`,
				`fleet.yaml:12:7: shares[0].replication.schedule: missing; this field is required`,
				`fleet.yaml:12:7: shares[0].replication.retention: missing; this field is required`,
				`fleet.yaml:13:5: shares[1].pool: missing; this field is required`,
				`fleet.yaml:15:16: shares[1].snapshots.schedule: missing; this field is required`,
				`fleet.yaml:15:16: shares[1].snapshots.retention: missing; this field is required`,
			},
		},
		{
			name: "missing appliances",
			src: `version: 1
fleet: office
`,
			want: []string{
				`fleet.yaml:1:1: appliances: missing; this field is required`,
			},
		},
		{
			name: "no appliances",
			src: `version: 1
appliances: []
`,
			want: []string{
				`fleet.yaml:2:13: appliances: a fleet needs at least one appliance`,
			},
		},
		{
			name: "version 2",
			src: `version: 2
appliances:
  - name: nas1
    address: nas1:7400
`,
			want: []string{
				`fleet.yaml:1:10: version: version 2 is not supported; this fleetctl reads version 1`,
			},
		},
		{
			name: "bad addresses",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1
  - name: nas2
    address: nas2:0
  - name: nas3
    address: nas3:70000
  - name: nas4
    address: ":7400"
  - name: nas5
    address: nas5:7400
  - name: nas6
    address: nas5:7400
  - name: nas7
    address: "\nnas7:7400"
  - name: nas8
    address: nas 8:7400
`,
			want: []string{
				`fleet.yaml:4:14: appliances[0].address: "nas1" is not host:port, like nas1.example.net:7400`,
				`fleet.yaml:6:14: appliances[1].address: "nas2:0": port "0" is not a number from 1 to 65535`,
				`fleet.yaml:8:14: appliances[2].address: "nas3:70000": port "70000" is not a number from 1 to 65535`,
				`fleet.yaml:10:14: appliances[3].address: ":7400" has no host; write the address other appliances reach it at, like nas1.example.net:7400`,
				`fleet.yaml:14:14: appliances[5].address: address nas5:7400 is already used by appliances[4]`,
				`fleet.yaml:16:14: appliances[6].address: "\nnas7:7400": the host may not contain spaces or control characters`,
				`fleet.yaml:18:14: appliances[7].address: "nas 8:7400": the host may not contain spaces or control characters`,
			},
		},
		{
			name: "bad pool paths",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    pools:
      - {name: a, path: mnt/tank}
      - {name: b, path: /mnt/../mnt/tank/}
      - {name: c, path: /}
      - {name: d, path: /mnt/d}
      - {name: e, path: /mnt/d}
      - {name: a, path: /mnt/f}
`,
			want: []string{
				`fleet.yaml:6:25: appliances[0].pools[0].path: "mnt/tank" is not an absolute path; write the mount point, like /mnt/tank`,
				`fleet.yaml:7:25: appliances[0].pools[1].path: "/mnt/../mnt/tank/" is not a clean path; write "/mnt/tank"`,
				`fleet.yaml:8:25: appliances[0].pools[2].path: the root directory cannot be a pool; mount the btrfs filesystem somewhere like /mnt/tank`,
				`fleet.yaml:10:25: appliances[0].pools[4].path: path /mnt/d is already the pool at appliances[0].pools[3]`,
				`fleet.yaml:11:16: appliances[0].pools[5].name: pool "a" is already defined on appliance "nas1" at appliances[0].pools[0]`,
			},
		},
		{
			name: "wrong kinds",
			src: `version: "1"
fleet: [office]
witness: [30s, 15s]
appliances:
  - name: {first: nas1}
    address: nas1:7400
  - name: nas2
    address: nas2:7400
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - name: a
    appliance: nas2
    pool: tank
    snapshots: {schedule: "@daily", retention: 7d, keep_min: two}
  - name: b
    appliance: nas2
    pool: tank
    replication: [nas1/tank]
  - name: c
    appliance: nas2
    pool: tank
    quota: [1GiB]
    snapshots: {schedule: "@daily", retention: 7d, keep_min: 1.5}
`,
			want: []string{
				`fleet.yaml:1:10: version: want a whole number, found the value "1"`,
				`fleet.yaml:2:8: fleet: want a string, found a list`,
				`fleet.yaml:3:10: witness: want a mapping (key: value lines), found a list`,
				`fleet.yaml:5:11: appliances[0].name: want a string, found a mapping`,
				`fleet.yaml:15:62: shares[0].snapshots.keep_min: want a whole number, found the value "two"`,
				`fleet.yaml:19:18: shares[1].replication: want a mapping (key: value lines), found a list`,
				`fleet.yaml:23:12: shares[2].quota: want a string, found a list`,
				`fleet.yaml:24:62: shares[2].snapshots.keep_min: want a whole number, found the value "1.5"`,
			},
		},
		{
			name: "appliances as a mapping",
			src: `version: 1
appliances:
  name: nas1
  address: nas1:7400
`,
			want: []string{
				`fleet.yaml:3:3: appliances: want a list (lines starting with -), found a mapping`,
			},
		},
		{
			name: "bad enums and keep_min",
			src: `version: 1
witness:
  failback: never
appliances:
  - name: nas1
    address: nas1:7400
    role: boss
    pools:
      - {name: tank, path: /mnt/tank}
shares:
  - name: a
    appliance: nas1
    pool: tank
    state: gone
    failover: sometimes
    snapshots: {schedule: "@daily", retention: 7d, keep_min: -1}
`,
			want: []string{
				`fleet.yaml:3:13: witness.failback: "never" is not allowed; use manual or auto`,
				`fleet.yaml:7:11: appliances[0].role: "boss" is not allowed; use storage or witness`,
				`fleet.yaml:14:12: shares[0].state: "gone" is not allowed; use present or absent`,
				`fleet.yaml:15:15: shares[0].failover: "sometimes" is not allowed; use auto, manual or off`,
				`fleet.yaml:16:62: shares[0].snapshots.keep_min: keep_min -1 must be at least 1 (0 or left out means 1)`,
			},
		},

		// Problems with the file as a whole: one message, nothing after it.
		{
			name: "empty file",
			src:  ``,
			want: []string{
				`fleet.yaml:1:1: the file is empty; a fleet spec needs at least version: 1 and appliances:`,
			},
		},
		{
			name: "only a comment",
			src:  "# fleet.yaml, to be written\n",
			want: []string{
				`fleet.yaml:1:1: the file is empty; a fleet spec needs at least version: 1 and appliances:`,
			},
		},
		{
			name: "not YAML",
			src:  "a: [b\n",
			want: []string{
				`fleet.yaml:1: not valid YAML: did not find expected ',' or ']'`,
			},
		},
		{
			name: "top-level list",
			src:  "- version: 1\n",
			want: []string{
				`fleet.yaml:1:1: the top level must be a mapping with version:, appliances: and shares:, not a list`,
			},
		},
		{
			name: "top-level scalar",
			src:  "hello\n",
			want: []string{
				`fleet.yaml:1:1: the top level must be a mapping with version:, appliances: and shares:, not the value "hello"`,
			},
		},
		{
			name: "document marker only",
			src:  "---\n",
			want: []string{
				`fleet.yaml:2:1: the top level must be a mapping with version:, appliances: and shares:, not null`,
			},
		},
		{
			name: "tab indenting a list item",
			src:  "version: 1\nappliances:\n\t- name: nas1\n",
			want: []string{
				`fleet.yaml:3:1: tab character in the indentation; YAML indents with spaces only`,
			},
		},
		{
			name: "tab indenting a field after a scalar",
			src:  "version: 1\nappliances:\n  - name: nas1\n\taddress: nas1:7400\n",
			want: []string{
				`fleet.yaml:4:1: tab character in the indentation; YAML indents with spaces only`,
			},
		},
		{
			name: "tab after spaces",
			src:  "version: 1\nappliances:\n  - name: nas1\n    address: nas1:7400\n    pools:\n      - name: tank\n  \tpath: /mnt/tank\n",
			want: []string{
				`fleet.yaml:7:3: tab character in the indentation; YAML indents with spaces only`,
			},
		},
		{
			name: "two documents",
			src: `version: 1
appliances:
  - name: nas1
    address: nas1:7400
---
version: 1
`,
			want: []string{
				`fleet.yaml:5:1: a second YAML document (after ---); a fleet spec is one document`,
			},
		},
		{
			name: "merge keys",
			src: `version: 1
appliances:
  - &nas1
    name: nas1
    address: nas1:7400
  - <<: *nas1
    name: nas2
`,
			want: []string{
				`fleet.yaml:6:5: appliances[1]: merge keys (<<) are not supported; write the fields out`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLines(t, errorLines(t, []byte(tt.src)), tt.want)
		})
	}
}

// A file with several mistakes, some found while decoding and some while
// validating, reports every one of them in file order.
func TestParseReportsEveryProblemInFileOrder(t *testing.T) {
	src := `version: 1
fleet: Office
witness:
  fence_after: 40s
appliances:
  - name: nas1
    address: nas1
    pools:
      - name: tank
        path: /mnt/tank
  - name: nas2
    address: nas2:7400
    colour: blue
shares:
  - name: a
    appliance: nas1
    pool: tank
    quota: 10G
  - name: b
    appliance: nas3
    pool: tank
    snapshots:
      schedule: every 1x
      retention: 7d
`
	checkLines(t, errorLines(t, []byte(src)), []string{
		`fleet.yaml:2:8: fleet: "Office" is not a valid fleet name: lowercase letters, digits and '-', at most 63`,
		`fleet.yaml:4:16: witness.fence_after: fence_after 40s must be shorter than failover_after 30s by at least 7.5s (max(5s, failover_after/4)), so a cut-off appliance is read-only before its replica is promoted; use at most 22.5s`,
		`fleet.yaml:7:14: appliances[0].address: "nas1" is not host:port, like nas1.example.net:7400`,
		`fleet.yaml:13:5: appliances[1].colour: unknown field "colour"; known fields here: name, address, role, pools`,
		`fleet.yaml:18:12: shares[0].quota: "10G": unit "G" is ambiguous; write 10GiB (binary) or 10GB (decimal)`,
		`fleet.yaml:20:16: shares[1].appliance: appliance "nas3" is not defined`,
		`fleet.yaml:23:17: shares[1].snapshots.schedule: "every 1x": "1x" is not a duration; write it like "every 10m" or "every 1h"`,
	})
}

func TestParseTooLarge(t *testing.T) {
	src := []byte("version: 1\n# " + strings.Repeat("x", schema.MaxFileSize) + "\n")
	checkLines(t, errorLines(t, src), []string{
		fmt.Sprintf("fleet.yaml: the file is %d bytes; a fleet spec may be at most 4194304 (4 MiB)", len(src)),
	})
}

// parseQuickly runs Parse and fails if it hangs or panics.
func parseQuickly(t *testing.T, src []byte) []string {
	t.Helper()
	done := make(chan []string, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("Parse panicked: %v", r)
				done <- nil
			}
		}()
		_, err := schema.Parse("fleet.yaml", src)
		if err == nil {
			t.Errorf("Parse accepted the spec, want an error")
			done <- nil
			return
		}
		done <- strings.Split(err.Error(), "\n")
	}()
	select {
	case lines := <-done:
		return lines
	case <-time.After(20 * time.Second):
		t.Fatalf("Parse did not return within 20s")
		return nil
	}
}

// A "billion laughs": nine levels of nine aliases, 9^9 values when expanded.
// The decoder only walks what the spec's types can hold, so it stops early.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nlaughs:\n  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 9; i++ {
		ref := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "  - &l%d [%s]\n", i, strings.TrimSuffix(strings.Repeat(ref+", ", 9), ", "))
	}
	b.WriteString("appliances: *l8\n")
	start := time.Now()
	lines := parseQuickly(t, []byte(b.String()))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v, want well under a second", d)
	}
	want := []string{
		`fleet.yaml:2:1: laughs: unknown field "laughs"; known fields here: version, fleet, witness, appliances, shares`,
	}
	for i := range 9 {
		want = append(want, fmt.Sprintf(`fleet.yaml:10:5: appliances[%d]: want a mapping (key: value lines), found a list`, i))
	}
	checkLines(t, lines, want)
}

// Aliases that the spec's types do hold: 70,000 appliances, each with a
// pool, from a 300 KB file. Parse gives up at its limit with one message
// rather than a flood of them.
func TestParseAliasExpansionLimit(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("version: 1\nanchors:\n  - &a {name: nas1, address: \"nas1:7400\", pools: [{name: tank, path: /mnt/tank}]}\n")
	b.WriteString("appliances: [")
	for i := range 70000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("*a")
	}
	b.WriteString("]\n")
	checkLines(t, parseQuickly(t, b.Bytes()), []string{
		`fleet.yaml:2:1: anchors: unknown field "anchors"; known fields here: version, fleet, witness, appliances, shares`,
		`fleet.yaml:3:70: appliances[28570].pools[0].path: the document expands to more than 200000 values (aliases?); simplify it`,
	})
}

// Errors is a list a caller can take apart: File, Line, Column, Path and
// Message are the pieces of the formatted line.
func TestParseErrorFields(t *testing.T) {
	_, err := schema.Parse("site/fleet.yaml", []byte("version: 1\nappliances:\n  - name: nas1\n    address: nas1\n"))
	var errs schema.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("want one schema.Error, got %v", err)
	}
	want := schema.Error{File: "site/fleet.yaml", Line: 4, Column: 14, Path: "appliances[0].address", Message: `"nas1" is not host:port, like nas1.example.net:7400`}
	if *errs[0] != want {
		t.Fatalf("want %+v, got %+v", want, *errs[0])
	}
}

// Validate on a spec built in code reports problems without positions.
func TestValidateBuiltInCode(t *testing.T) {
	s := &schema.Spec{
		Version:    1,
		Appliances: []schema.Appliance{{Name: "nas1", Address: "nas1:7400"}},
		Shares:     []schema.Share{{Name: "data", Appliance: "nas1", Pool: "tank"}},
	}
	s.ApplyDefaults()
	err := s.Validate()
	if err == nil {
		t.Fatalf("Validate accepted a share on a pool that does not exist")
	}
	want := `: shares[0].pool: appliance "nas1" has no pool "tank" (it has no pools)`
	if err.Error() != want {
		t.Fatalf("want %q, got %q", want, err.Error())
	}
	s.Appliances[0].Pools = []schema.Pool{{Name: "tank", Path: "/mnt/tank"}}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate after adding the pool: %v", err)
	}
}
