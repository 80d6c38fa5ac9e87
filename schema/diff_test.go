package schema_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/fleetctl/fleetctl/schema"
)

// diffParse parses a spec the way the CLI does, defaults applied.
func diffParse(t *testing.T, text string) *schema.Spec {
	t.Helper()
	s, err := schema.Parse("fleet.yaml", []byte(text))
	if err != nil {
		t.Fatalf("parse:\n%s\nerror: %v", text, err)
	}
	return s
}

// diffJSON shows changes in failure messages.
func diffJSON(c schema.Changes) string {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// The building blocks of the test fleets.
const (
	diffNAS12 = `version: 1
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas2, address: "nas2:7400", pools: [{name: tank, path: /mnt/tank}]}
`
	diffNAS123 = diffNAS12 + `  - {name: nas3, address: "nas3:7400", pools: [{name: tank, path: /mnt/tank}]}
`
	diffProjects = `shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 100GiB}
`
	diffReplicated = `shares:
  - name: projects
    appliance: nas1
    pool: tank
    quota: 100GiB
    snapshots: {schedule: every 1h, retention: 24h 7d}
    replication: {to: nas2/tank, schedule: every 10m, retention: 48h 14d}
`
)

func TestDiff(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		want     schema.Changes
	}{
		{
			name: "identical specs have no changes",
			old:  diffNAS12 + diffReplicated,
			new:  diffNAS12 + diffReplicated,
		},
		{
			name: "reordering appliances, pools and shares is no change",
			old: `version: 1
appliances:
  - {name: nas1, address: "nas1:7400", pools: [{name: tank, path: /mnt/tank}, {name: fast, path: /mnt/fast}]}
  - {name: nas2, address: "nas2:7400", pools: [{name: tank, path: /mnt/tank}]}
shares:
  - {name: projects, appliance: nas1, pool: tank}
  - {name: scratch, appliance: nas1, pool: fast}
`,
			new: `version: 1
appliances:
  - {name: nas2, address: "nas2:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas1, address: "nas1:7400", pools: [{name: fast, path: /mnt/fast}, {name: tank, path: /mnt/tank}]}
shares:
  - {name: scratch, appliance: nas1, pool: fast}
  - {name: projects, appliance: nas1, pool: tank}
`,
		},
		{
			name: "equal values written differently are no change",
			old: `version: 1
witness: {failover_after: 60s}
` + diffNAS12[len("version: 1\n"):] + `shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 200GiB,
     snapshots: {schedule: every 60m, retention: "24h   7d"}}
`,
			new: `version: 1
witness: {failover_after: 1m, fence_after: 15s, failback: manual}
` + diffNAS12[len("version: 1\n"):] + `shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 214748364800B, state: present, failover: off,
     snapshots: {schedule: every 1h, retention: 24h 7d, keep_min: 1}}
`,
		},
		{
			name: "an added appliance comes with its pools",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS123 + diffProjects,
			want: schema.Changes{
				{Op: "+", Kind: "appliance", Name: "nas3", Fields: []schema.FieldChange{
					{Path: "address", New: "nas3:7400"}, {Path: "role", New: "storage"}}},
				{Op: "+", Kind: "pool", Name: "nas3/tank", Fields: []schema.FieldChange{
					{Path: "path", New: "/mnt/tank"}}},
			},
		},
		{
			name: "an added witness appliance has no pools",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS12 + `  - {name: quorum, address: "quorum:7400", role: witness}` + "\n" + diffProjects,
			want: schema.Changes{
				{Op: "+", Kind: "appliance", Name: "quorum", Fields: []schema.FieldChange{
					{Path: "address", New: "quorum:7400"}, {Path: "role", New: "witness"}}},
			},
		},
		{
			name: "a removed appliance takes its pools out of the spec, not off the disk",
			old:  diffNAS123 + diffProjects,
			new:  diffNAS12 + diffProjects,
			want: schema.Changes{
				{Op: "-", Kind: "appliance", Name: "nas3", Note: "leaves the fleet, nothing on it is deleted", Fields: []schema.FieldChange{
					{Path: "address", Old: "nas3:7400"}, {Path: "role", Old: "storage"}}},
				{Op: "-", Kind: "pool", Name: "nas3/tank", Note: "no longer managed, nothing on it is deleted", Fields: []schema.FieldChange{
					{Path: "path", Old: "/mnt/tank"}}},
			},
		},
		{
			name: "a changed address",
			old:  diffNAS12 + diffProjects,
			new:  strings.Replace(diffNAS12, `"nas2:7400"`, `"nas2.example:7400"`, 1) + diffProjects,
			want: schema.Changes{
				{Op: "~", Kind: "appliance", Name: "nas2", Fields: []schema.FieldChange{
					{Path: "address", Old: "nas2:7400", New: "nas2.example:7400"}}},
			},
		},
		{
			name: "a pool added to an appliance",
			old:  diffNAS12 + diffProjects,
			new:  strings.Replace(diffNAS12, `[{name: tank, path: /mnt/tank}]}`, `[{name: tank, path: /mnt/tank}, {name: fast, path: /mnt/fast}]}`, 1) + diffProjects,
			want: schema.Changes{
				{Op: "+", Kind: "pool", Name: "nas1/fast", Fields: []schema.FieldChange{
					{Path: "path", New: "/mnt/fast"}}},
			},
		},
		{
			name: "a pool's path changed",
			old:  diffNAS12 + diffProjects,
			new:  strings.Replace(diffNAS12, `"nas2:7400", pools: [{name: tank, path: /mnt/tank}]`, `"nas2:7400", pools: [{name: tank, path: /srv/tank}]`, 1) + diffProjects,
			want: schema.Changes{
				{Op: "~", Kind: "pool", Name: "nas2/tank", Fields: []schema.FieldChange{
					{Path: "path", Old: "/mnt/tank", New: "/srv/tank"}}},
			},
		},
		{
			name: "an added share lists its fields, defaults included",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS12 + diffProjects + "  - {name: scratch, appliance: nas2, pool: tank, quota: 50GiB}\n",
			want: schema.Changes{
				{Op: "+", Kind: "share", Name: "scratch", Fields: []schema.FieldChange{
					{Path: "appliance", New: "nas2"}, {Path: "pool", New: "tank"}, {Path: "quota", New: "50GiB"},
					{Path: "state", New: "present"}, {Path: "failover", New: "off"}}},
			},
		},
		{
			name: "a share removed from the spec is kept on disk",
			old:  diffNAS12 + diffProjects + "  - {name: old, appliance: nas2, pool: tank}\n",
			new:  diffNAS12 + diffProjects,
			want: schema.Changes{
				{Op: "-", Kind: "share", Name: "old", Note: "removed from the spec: kept on disk, reported as orphaned", Fields: []schema.FieldChange{
					{Path: "appliance", Old: "nas2"}, {Path: "pool", Old: "tank"}, {Path: "state", Old: "present"}, {Path: "failover", Old: "off"}}},
			},
		},
		{
			name: "an absent share removed from the spec is no longer deleted",
			old:  diffNAS12 + diffProjects + "  - {name: old, appliance: nas2, pool: tank, state: absent}\n",
			new:  diffNAS12 + diffProjects,
			want: schema.Changes{
				{Op: "-", Kind: "share", Name: "old", Note: "removed from the spec: no longer deleted, reported as orphaned if still on disk", Fields: []schema.FieldChange{
					{Path: "appliance", Old: "nas2"}, {Path: "pool", Old: "tank"}, {Path: "state", Old: "absent"}, {Path: "failover", Old: "off"}}},
			},
		},
		{
			name: "a changed quota",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS12 + strings.Replace(diffProjects, "100GiB", "200GiB", 1),
			want: schema.Changes{
				{Op: "~", Kind: "share", Name: "projects", Fields: []schema.FieldChange{
					{Path: "quota", Old: "100GiB", New: "200GiB"}}},
			},
		},
		{
			name: "added replication shows as its fields added, with the failover default it brings",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS12 + strings.Replace(diffProjects, "}", ", replication: {to: nas2/tank, schedule: every 10m, retention: 48h 14d}}", 1),
			want: schema.Changes{
				{Op: "~", Kind: "share", Name: "projects", Fields: []schema.FieldChange{
					{Path: "replication.to", New: "nas2/tank"},
					{Path: "replication.schedule", New: "every 10m"},
					{Path: "replication.retention", New: "48h 14d"},
					{Path: "replication.keep_min", New: "1"},
					{Path: "failover", Old: "off", New: "manual"}}},
			},
		},
		{
			name: "a changed replication target",
			old:  diffNAS123 + diffReplicated,
			new:  diffNAS123 + strings.Replace(diffReplicated, "to: nas2/tank", "to: nas3/tank", 1),
			want: schema.Changes{
				{Op: "~", Kind: "share", Name: "projects", Fields: []schema.FieldChange{
					{Path: "replication.to", Old: "nas2/tank", New: "nas3/tank"}}},
			},
		},
		{
			name: "changed schedules and retention",
			old:  diffNAS12 + diffReplicated,
			new: diffNAS12 + strings.NewReplacer("schedule: every 10m", `schedule: "*/5 * * * *"`,
				"retention: 24h 7d", "retention: 24h 7d 4w").Replace(diffReplicated),
			want: schema.Changes{
				{Op: "~", Kind: "share", Name: "projects", Fields: []schema.FieldChange{
					{Path: "snapshots.retention", Old: "24h 7d", New: "24h 7d 4w"},
					{Path: "replication.schedule", Old: "every 10m", New: "*/5 * * * *"}}},
			},
		},
		{
			name: "a share made absent is a change that deletes it",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS12 + strings.Replace(diffProjects, "}", ", state: absent}", 1),
			want: schema.Changes{
				{Op: "~", Kind: "share", Name: "projects", Fields: []schema.FieldChange{
					{Path: "state", Old: "present", New: "absent", Note: "the share will be DELETED on nas1 after a final snapshot"}}},
			},
		},
		{
			name: "a new share written absent deletes it if it exists",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS12 + diffProjects + "  - {name: old-data, appliance: nas2, pool: tank, state: absent}\n",
			want: schema.Changes{
				{Op: "+", Kind: "share", Name: "old-data", Fields: []schema.FieldChange{
					{Path: "appliance", New: "nas2"}, {Path: "pool", New: "tank"},
					{Path: "state", New: "absent", Note: "the share will be DELETED on nas2 if it exists, after a final snapshot"},
					{Path: "failover", New: "off"}}},
			},
		},
		{
			name: "a changed witness policy",
			old:  diffNAS12 + diffProjects,
			new:  "witness: {failover_after: 1m, failback: auto}\n" + diffNAS12 + diffProjects,
			want: schema.Changes{
				{Op: "~", Kind: "witness", Fields: []schema.FieldChange{
					{Path: "failover_after", Old: "30s", New: "1m"},
					{Path: "failback", Old: "manual", New: "auto"}}},
			},
		},
		{
			name: "a renamed fleet",
			old:  diffNAS12 + diffProjects,
			new:  "fleet: office\n" + diffNAS12 + diffProjects,
			want: schema.Changes{
				{Op: "~", Kind: "fleet", Fields: []schema.FieldChange{
					{Path: "fleet", Old: "fleet", New: "office"}}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := schema.Diff(diffParse(t, tc.old), diffParse(t, tc.new))
			if tc.want == nil {
				tc.want = schema.Changes{}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Diff:\nwant %s\ngot  %s", diffJSON(tc.want), diffJSON(got))
			}
		})
	}
}

func TestDiffNilOldAddsEverything(t *testing.T) {
	s := diffParse(t, "fleet: office\n"+diffNAS12+diffReplicated)
	got := schema.Diff(nil, s)
	var lines []string
	for _, c := range got {
		lines = append(lines, string(c.Op)+" "+c.Kind+" "+c.Name)
	}
	want := []string{
		"+ fleet ",
		"+ witness ",
		"+ appliance nas1",
		"+ pool nas1/tank",
		"+ appliance nas2",
		"+ pool nas2/tank",
		"+ share projects",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("Diff(nil, spec):\nwant %q\ngot  %q", want, lines)
	}
	wantFleet := []schema.FieldChange{{Path: "version", New: "1"}, {Path: "fleet", New: "office"}}
	if !reflect.DeepEqual(got[0].Fields, wantFleet) {
		t.Fatalf("fleet fields:\nwant %+v\ngot  %+v", wantFleet, got[0].Fields)
	}
	wantWitness := []schema.FieldChange{
		{Path: "failover_after", New: "30s"}, {Path: "fence_after", New: "15s"},
		{Path: "degraded_latency", New: "250ms"}, {Path: "failback", New: "manual"}}
	if !reflect.DeepEqual(got[1].Fields, wantWitness) {
		t.Fatalf("witness fields:\nwant %+v\ngot  %+v", wantWitness, got[1].Fields)
	}
}

// Every real fleet file diffs against nothing as all additions and against
// itself as nothing, so no field of the spec is one Diff cannot render.
func TestDiffExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../fleet.yaml.example")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s := diffParse(t, string(data))
			all := schema.Diff(nil, s)
			if add, change, remove := all.Summary(); add != len(all) || change != 0 || remove != 0 {
				t.Fatalf("Diff(nil, %s): want only additions, got %d to add, %d to change, %d to remove", f, add, change, remove)
			}
			if got := schema.Diff(s, diffParse(t, string(data))); len(got) != 0 {
				t.Fatalf("Diff of %s with itself: want no changes, got %s", f, diffJSON(got))
			}
		})
	}
}

func TestDiffSummary(t *testing.T) {
	old := diffParse(t, diffNAS123+diffProjects+"  - {name: old, appliance: nas2, pool: tank}\n")
	new := diffParse(t, "witness: {failover_after: 1m}\n"+diffNAS12+
		`  - {name: nas4, address: "nas4:7400", pools: [{name: tank, path: /mnt/tank}]}
shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 200GiB}
  - {name: scratch, appliance: nas4, pool: tank}
`)
	add, change, remove := schema.Diff(old, new).Summary()
	// + appliance nas4, + pool nas4/tank, + share scratch; ~ witness, ~ share
	// projects; - appliance nas3, - pool nas3/tank, - share old.
	if add != 3 || change != 2 || remove != 3 {
		t.Fatalf("Summary: want 3 to add, 2 to change, 3 to remove; got %d, %d, %d", add, change, remove)
	}
	if add, change, remove := schema.Changes(nil).Summary(); add+change+remove != 0 {
		t.Fatalf("Summary of no changes: want 0, 0, 0; got %d, %d, %d", add, change, remove)
	}
}

// The fleets of the Render golden test: the stored one, and a file that adds
// nas3, grows projects, adds scratch, deletes old-data and drops old.
const (
	diffRenderOld = `version: 1
appliances:
  - {name: nas1, address: "nas1.example:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas2, address: "nas2.example:7400", pools: [{name: tank, path: /mnt/tank}]}
shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 100GiB}
  - {name: old-data, appliance: nas1, pool: tank}
  - {name: old, appliance: nas1, pool: tank}
`
	diffRenderNew = `version: 1
witness: {failover_after: 1m}
appliances:
  - {name: nas1, address: "nas1.example:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas2, address: "nas2.example:7400", pools: [{name: tank, path: /mnt/tank}]}
  - {name: nas3, address: "nas3.example:7400", pools: [{name: tank, path: /mnt/tank}]}
shares:
  - {name: projects, appliance: nas1, pool: tank, quota: 200GiB}
  - {name: scratch, appliance: nas2, pool: tank, quota: 50GiB}
  - {name: old-data, appliance: nas1, pool: tank, state: absent}
`
)

func TestDiffRender(t *testing.T) {
	cases := []struct {
		name     string
		old, new string // old "" is no stored spec
		want     string
	}{
		{
			name: "no changes",
			old:  diffRenderOld,
			new:  diffRenderOld,
			want: "No changes. The stored spec matches the file.\n",
		},
		{
			name: "adds, changes, a deletion and an orphan",
			old:  diffRenderOld,
			new:  diffRenderNew,
			want: `  ~ witness
      failover_after: 30s → 1m
  + appliance nas3 (nas3.example:7400, storage)
  + pool nas3/tank (/mnt/tank)
  ~ share projects
      quota: 100GiB → 200GiB
  + share scratch on nas2/tank
      quota: 50GiB
  ~ share old-data
      state: present → absent (the share will be DELETED on nas1 after a final snapshot)
  - share old on nas1/tank (removed from the spec: kept on disk, reported as orphaned)

Spec: 3 to add, 3 to change, 1 to remove; 1 share will be DELETED: old-data.
`,
		},
		{
			name: "fields aligned within a change",
			old:  diffNAS12 + diffProjects,
			new:  diffNAS12 + strings.Replace(diffProjects, "}", ", replication: {to: nas2/tank, schedule: every 10m, retention: 48h 14d}}", 1),
			want: `  ~ share projects
      replication.to:        (none) → nas2/tank
      replication.schedule:  (none) → every 10m
      replication.retention: (none) → 48h 14d
      replication.keep_min:  (none) → 1
      failover:              off → manual

Spec: 0 to add, 1 to change, 0 to remove.
`,
		},
		{
			name: "first apply",
			new:  "fleet: office\n" + diffNAS12 + diffReplicated,
			want: `  + fleet
      version: 1
      fleet:   office
  + witness
      failover_after:   30s
      fence_after:      15s
      degraded_latency: 250ms
      failback:         manual
  + appliance nas1 (nas1:7400, storage)
  + pool nas1/tank (/mnt/tank)
  + appliance nas2 (nas2:7400, storage)
  + pool nas2/tank (/mnt/tank)
  + share projects on nas1/tank
      quota:                 100GiB
      snapshots.schedule:    every 1h
      snapshots.retention:   24h 7d
      snapshots.keep_min:    1
      replication.to:        nas2/tank
      replication.schedule:  every 10m
      replication.retention: 48h 14d
      replication.keep_min:  1
      failover:              manual

Spec: 7 to add, 0 to change, 0 to remove.
`,
		},
		{
			name: "removed appliance and two deletions",
			old:  diffNAS123 + diffProjects + "  - {name: scratch, appliance: nas2, pool: tank}\n",
			new: diffNAS12 + strings.Replace(diffProjects, "}", ", state: absent}", 1) +
				"  - {name: scratch, appliance: nas2, pool: tank, state: absent}\n",
			want: `  - appliance nas3 (nas3:7400, storage; leaves the fleet, nothing on it is deleted)
  - pool nas3/tank (/mnt/tank; no longer managed, nothing on it is deleted)
  ~ share projects
      state: present → absent (the share will be DELETED on nas1 after a final snapshot)
  ~ share scratch
      state: present → absent (the share will be DELETED on nas2 after a final snapshot)

Spec: 0 to add, 2 to change, 2 to remove; 2 shares will be DELETED: projects, scratch.
`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var old *schema.Spec
			if tc.old != "" {
				old = diffParse(t, tc.old)
			}
			var b bytes.Buffer
			if err := schema.Diff(old, diffParse(t, tc.new)).Render(&b, false); err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got := b.String(); got != tc.want {
				t.Fatalf("Render:\nwant:\n%s\ngot:\n%s", tc.want, got)
			}
		})
	}
}

// TestDiffDeleteNamesActiveAppliance: the note on a share made absent names
// the appliance that holds its writable copy now, which after a failover
// or switchover is not the spec's, and says the other keeps its copies.
func TestDiffDeleteNamesActiveAppliance(t *testing.T) {
	old := diffParse(t, diffNAS12+diffReplicated)
	absent := diffParse(t, diffNAS12+strings.Replace(diffReplicated, "quota: 100GiB", "quota: 100GiB\n    state: absent", 1))
	note := func(opt schema.DiffOptions) string {
		t.Helper()
		for _, c := range schema.DiffWith(old, absent, opt) {
			for _, f := range c.Fields {
				if f.Path == "state" {
					return f.Note
				}
			}
		}
		t.Fatal("no state change")
		return ""
	}
	for _, tc := range []struct {
		name   string
		active map[string]string
		want   string
	}{
		{"as the spec says", nil, "the share will be DELETED on nas1 after a final snapshot; nas2 keeps its copies"},
		{"active on the spec's appliance", map[string]string{"projects": "nas1"}, "the share will be DELETED on nas1 after a final snapshot; nas2 keeps its copies"},
		{"after a switchover", map[string]string{"projects": "nas2"}, "the share will be DELETED on nas2, where it is active now, after a final snapshot; nas1 keeps its copies"},
		{"another share's activation", map[string]string{"other": "nas2"}, "the share will be DELETED on nas1 after a final snapshot; nas2 keeps its copies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := note(schema.DiffOptions{Active: tc.active}); got != tc.want {
				t.Errorf("note %q; want %q", got, tc.want)
			}
		})
	}
	if got, want := schema.Diff(old, absent), schema.DiffWith(old, absent, schema.DiffOptions{}); !reflect.DeepEqual(got, want) {
		t.Errorf("Diff %v differs from DiffWith without options %v", got, want)
	}
}

func TestDiffRenderColor(t *testing.T) {
	changes := schema.Diff(diffParse(t, diffRenderOld), diffParse(t, diffRenderNew))
	var plain, colored bytes.Buffer
	if err := changes.Render(&plain, false); err != nil {
		t.Fatal(err)
	}
	if err := changes.Render(&colored, true); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "\x1b[") {
		t.Fatalf("Render without color wrote ANSI codes:\n%q", plain.String())
	}
	got := colored.String()
	for _, want := range []string{
		"  \x1b[32m+\x1b[0m appliance nas3",
		"  \x1b[33m~\x1b[0m witness",
		"  \x1b[31m-\x1b[0m share old",
		"      \x1b[31mstate: present → absent (the share will be DELETED on nas1 after a final snapshot)\x1b[0m\n",
		"\x1b[31m1 share will be DELETED: old-data.\x1b[0m\n",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("Render with color: want %q in\n%q", want, got)
		}
	}
	stripped := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(got, "")
	if stripped != plain.String() {
		t.Fatalf("Render with color, codes removed:\nwant:\n%s\ngot:\n%s", plain.String(), stripped)
	}
}

func TestDiffJSON(t *testing.T) {
	changes := schema.Diff(diffParse(t, diffRenderOld), diffParse(t, diffRenderNew))
	data, err := json.Marshal(changes)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var got []map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("Unmarshal %s: %v", data, err)
	}
	if len(got) != len(changes) {
		t.Fatalf("want an array of %d changes, got %s", len(changes), data)
	}
	want := map[string]any{
		"op": "~", "kind": "witness", "name": "",
		"fields": []any{map[string]any{"path": "failover_after", "old": "30s", "new": "1m"}},
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("first change:\nwant %v\ngot  %v", want, got[0])
	}
	want = map[string]any{
		"op": "+", "kind": "pool", "name": "nas3/tank",
		"fields": []any{map[string]any{"path": "path", "new": "/mnt/tank"}},
	}
	if !reflect.DeepEqual(got[2], want) {
		t.Fatalf("added pool:\nwant %v\ngot  %v", want, got[2])
	}
	last := got[len(got)-1]
	if last["op"] != "-" || last["name"] != "old" || last["note"] != "removed from the spec: kept on disk, reported as orphaned" {
		t.Fatalf("removed share: want op -, name old and the orphan note, got %v", last)
	}

	for _, none := range []schema.Changes{nil, schema.Diff(diffParse(t, diffRenderOld), diffParse(t, diffRenderOld))} {
		data, err := json.Marshal(none)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if string(data) != "[]" {
			t.Fatalf("no changes: want [], got %s", data)
		}
	}
}
