package schema_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

const (
	approveBase = `version: 1
witness: {failover_after: 30s, fence_after: 15s}
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: /mnt/tank}, {name: fast, path: /mnt/fast}]}
  - {name: nas2, address: "nas2:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: wit, address: "wit:7400", role: witness}
`
	approveShares = `shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 100GiB}
  - name: media
    appliance: nas1
    pool: tank
    replication: {to: nas2/tank, schedule: every 10m, retention: 48h}
`
)

// TestHazards: the one rule for what an apply must have approved.
func TestHazards(t *testing.T) {
	spec := approveBase + approveShares
	cases := []struct {
		name     string
		old, new string // old "" means nothing stored yet
		facts    schema.Facts
		want     []string // Key() of each hazard, in order
	}{
		{name: "first spec, nothing destructive", new: spec, want: nil},
		{name: "same file again", old: spec, new: spec, facts: schema.Facts{Used: map[string]uint64{"projects": 200 << 30}}, want: nil},
		{name: "share to absent", old: spec,
			new:  strings.Replace(spec, "quota: 100GiB}", "quota: 100GiB, state: absent}", 1),
			want: []string{"delete:projects"}},
		{name: "already absent stays absent", old: strings.Replace(spec, "quota: 100GiB}", "quota: 100GiB, state: absent}", 1),
			new:  strings.Replace(spec, "quota: 100GiB}", "quota: 100GiB, state: absent}", 1),
			want: nil},
		{name: "new share with state absent deletes what may exist", old: spec,
			new:  spec + "  - {name: old, appliance: nas2, pool: tank, state: absent}\n",
			want: []string{"delete:old"}},
		{name: "first spec with state absent", new: spec + "  - {name: old, appliance: nas2, pool: tank, state: absent}\n",
			want: []string{"delete:old"}},
		{name: "dropping a share from the file is not destructive", old: spec,
			new: approveBase + "shares:\n  - {name: projects, appliance: nas1, pool: tank, quota: 100GiB}\n", want: nil},
		{name: "move to another pool", old: spec,
			new:  strings.Replace(spec, "appliance: nas1, pool: tank, quota", "appliance: nas1, pool: fast, quota", 1),
			want: []string{"move:projects"}},
		{name: "move to another appliance", old: spec,
			new:  strings.Replace(spec, "appliance: nas1, pool: tank, quota", "appliance: nas2, pool: tank, quota", 1),
			want: []string{"move:projects"}},
		{name: "quota below use", old: spec,
			new:   strings.Replace(spec, "100GiB", "10GiB", 1),
			facts: schema.Facts{Used: map[string]uint64{"projects": 20 << 30}},
			want:  []string{"quota:projects"}},
		{name: "quota lowered but above use", old: spec,
			new:   strings.Replace(spec, "100GiB", "50GiB", 1),
			facts: schema.Facts{Used: map[string]uint64{"projects": 20 << 30}},
			want:  nil},
		{name: "quota lowered, use unknown", old: spec, new: strings.Replace(spec, "100GiB", "10GiB", 1), want: nil},
		{name: "quota set where there was none, below use", old: spec,
			new:   strings.Replace(spec, "    pool: tank\n    replication", "    pool: tank\n    quota: 1GiB\n    replication", 1),
			facts: schema.Facts{Used: map[string]uint64{"media": 2 << 30}},
			want:  []string{"quota:media"}},
		{name: "appliance holding shares removed", old: spec,
			new: `version: 1
witness: {failover_after: 30s, fence_after: 15s}
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: wit, address: "wit:7400", role: witness}
shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 100GiB}
`,
			want: []string{"remove:nas2"}},
		{name: "appliance holding nothing removed", old: spec + "  - {name: x, appliance: nas1, pool: tank}\n",
			new:  strings.Replace(spec, `  - {name: wit, address: "wit:7400", role: witness}`+"\n", "", 1) + "  - {name: x, appliance: nas1, pool: tank}\n",
			want: nil},
		{name: "failover_after lowered below an outage", old: spec,
			new:   strings.Replace(spec, "failover_after: 30s", "failover_after: 20s", 1),
			facts: schema.Facts{Silent: map[string]time.Duration{"nas1": 25 * time.Second, "nas2": 100 * time.Millisecond}},
			want:  []string{"witness:failover_after"}},
		{name: "failover_after lowered, everyone renewing", old: spec,
			new:   strings.Replace(spec, "failover_after: 30s", "failover_after: 20s", 1),
			facts: schema.Facts{Silent: map[string]time.Duration{"nas1": time.Second, "nas2": 100 * time.Millisecond}},
			want:  nil},
		{name: "failover_after lowered, outage already past the old value", old: spec,
			new:   strings.Replace(spec, "failover_after: 30s", "failover_after: 20s", 1),
			facts: schema.Facts{Silent: map[string]time.Duration{"nas1": time.Minute}},
			want:  nil},
		{name: "fence_after lowered below an outage", old: spec,
			new:   strings.Replace(spec, "fence_after: 15s", "fence_after: 5s", 1),
			facts: schema.Facts{Silent: map[string]time.Duration{"nas2": 6 * time.Second}},
			want:  []string{"witness:fence_after"}},
		{name: "witness appliances hold no lease", old: spec,
			new:   strings.Replace(spec, "fence_after: 15s", "fence_after: 5s", 1),
			facts: schema.Facts{Silent: map[string]time.Duration{"wit": 6 * time.Second}},
			want:  nil},
		{name: "another fleet's name", old: spec, new: "fleet: other\n" + spec, want: []string{"rename-fleet:other"}},
		{name: "first spec named unlike the CA", new: "fleet: other\n" + spec, facts: schema.Facts{CAFleet: "fleet"}, want: []string{"rename-fleet:other"}},
		{name: "first spec named like the CA", new: "fleet: office\n" + spec, facts: schema.Facts{CAFleet: "office"}, want: nil},
		{name: "every appliance dropped", old: spec, new: `version: 1
appliances:
  - {name: other1, address: "o1:7400", pools: [{name: tank, path: /mnt/tank}]}
`, want: []string{"replace-appliances:", "remove:nas1", "remove:nas2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var old *schema.Spec
			if tc.old != "" {
				old = diffParse(t, tc.old)
			}
			hs := schema.Hazards(old, diffParse(t, tc.new), tc.facts)
			var got []string
			for _, h := range hs {
				got = append(got, h.Key())
				if h.Reason == "" {
					t.Errorf("%s: no reason", h.Key())
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("hazards: want %q, got %q (%+v)", tc.want, got, hs)
			}
		})
	}
}

func TestApprovalApproves(t *testing.T) {
	del := schema.Hazard{Kind: schema.HazardDelete, Name: "old"}
	rename := schema.Hazard{Kind: schema.HazardRenameFleet, Name: "other"}
	replace := schema.Hazard{Kind: schema.HazardReplaceAppliances}
	cases := []struct {
		name string
		a    schema.Approval
		h    schema.Hazard
		want bool
	}{
		{"nothing approved", schema.Approval{}, del, false},
		{"by name", schema.Approval{Approve: []string{"delete:old"}}, del, true},
		{"another name", schema.Approval{Approve: []string{"delete:older"}}, del, false},
		{"another kind", schema.Approval{Approve: []string{"move:old"}}, del, false},
		{"all", schema.Approval{Approve: []string{"all"}}, del, true},
		{"all does not rename", schema.Approval{Approve: []string{"all"}}, rename, false},
		{"rename flag", schema.Approval{RenameFleet: true}, rename, true},
		{"rename flag approves no delete", schema.Approval{RenameFleet: true}, del, false},
		{"all does not replace", schema.Approval{Approve: []string{"all"}}, replace, false},
		{"replace flag", schema.Approval{ReplaceAppliances: true}, replace, true},
	}
	for _, tc := range cases {
		if got := tc.a.Approves(tc.h); got != tc.want {
			t.Errorf("%s: Approves = %v, want %v", tc.name, got, tc.want)
		}
	}
	hs := []schema.Hazard{del, rename, replace}
	if got := schema.ApprovalFor(hs).Unapproved(hs); len(got) != 0 {
		t.Fatalf("ApprovalFor approves less than its hazards: %+v unapproved", got)
	}
}

func TestApprovalCheck(t *testing.T) {
	for _, ok := range []string{"all", "delete:x", "move:x", "remove:nas1", "quota:x", "witness:fence_after"} {
		if err := (schema.Approval{Approve: []string{ok}}).Check(); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "delete", "delete:", "drop:x", "rename-fleet:x", "yes"} {
		if err := (schema.Approval{Approve: []string{bad}}).Check(); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
