package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile/looppool/looppooltest"
	"github.com/fleetctl/fleetctl/schema"
)

// The outputs below are btrfs-progs v6.2's, captured on one filesystem
// (kernel 6.18) holding the subvolumes projects, "my share", "my share/nested
// sub" (nested in "my share"), a read-only snapshot of projects under
// .fleetctl/snapshots, a copy of it received with btrfs receive under
// .fleetctl/recv, " lead space" and "trail space ".

// btrfs subvolume list -a -p -u -q -R -g <top-level mount>
const listTopLevel = "" +
	"ID 256 gen 9 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid 310f5a06-ffe4-6341-8ce1-627e11591a14 path projects\n" +
	"ID 257 gen 9 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid 36712fa8-4b0b-eb4f-91c5-1f08532d614c path my share\n" +
	"ID 258 gen 9 parent 257 top level 257 parent_uuid -                                    received_uuid -                                    uuid 82c0e5cf-99c2-f849-9f8c-e25fe0ddb3df path <FS_TREE>/my share/nested sub\n" +
	"ID 259 gen 9 parent 5 top level 5 parent_uuid 310f5a06-ffe4-6341-8ce1-627e11591a14 received_uuid -                                    uuid 70acb1a3-70f2-3842-8f3b-d7a302b776e1 path .fleetctl/snapshots/projects/projects.20261125T084600Z\n" +
	"ID 260 gen 10 parent 5 top level 5 parent_uuid -                                    received_uuid 70acb1a3-70f2-3842-8f3b-d7a302b776e1 uuid cd72c2f0-1912-6041-9afc-cc9b4f98e846 path .fleetctl/recv/projects.20261125T084600Z\n" +
	"ID 262 gen 17 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid c6b0b100-dfef-9447-8d1f-f9704764a5d4 path  lead space\n" +
	"ID 263 gen 17 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid b191799d-aba8-2948-afc5-7b91d7eaa6c6 path trail space \n"

// The same, asked of "my share" mounted with subvol="my share" (rootid 257):
// now every subvolume whose parent is not 257 gets "<FS_TREE>/".
const listSubvolMount = "" +
	"ID 256 gen 9 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid 310f5a06-ffe4-6341-8ce1-627e11591a14 path <FS_TREE>/projects\n" +
	"ID 257 gen 9 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid 36712fa8-4b0b-eb4f-91c5-1f08532d614c path <FS_TREE>/my share\n" +
	"ID 258 gen 9 parent 257 top level 257 parent_uuid -                                    received_uuid -                                    uuid 82c0e5cf-99c2-f849-9f8c-e25fe0ddb3df path my share/nested sub\n" +
	"ID 259 gen 9 parent 5 top level 5 parent_uuid 310f5a06-ffe4-6341-8ce1-627e11591a14 received_uuid -                                    uuid 70acb1a3-70f2-3842-8f3b-d7a302b776e1 path <FS_TREE>/.fleetctl/snapshots/projects/projects.20261125T084600Z\n" +
	"ID 260 gen 10 parent 5 top level 5 parent_uuid -                                    received_uuid 70acb1a3-70f2-3842-8f3b-d7a302b776e1 uuid cd72c2f0-1912-6041-9afc-cc9b4f98e846 path <FS_TREE>/.fleetctl/recv/projects.20261125T084600Z\n" +
	"ID 262 gen 17 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid c6b0b100-dfef-9447-8d1f-f9704764a5d4 path <FS_TREE>/ lead space\n" +
	"ID 263 gen 17 parent 5 top level 5 parent_uuid -                                    received_uuid -                                    uuid b191799d-aba8-2948-afc5-7b91d7eaa6c6 path <FS_TREE>/trail space \n"

// btrfs subvolume list -r
const listReadOnly = "" +
	"ID 259 gen 9 top level 5 path .fleetctl/snapshots/projects/projects.20261125T084600Z\n" +
	"ID 260 gen 10 top level 5 path .fleetctl/recv/projects.20261125T084600Z\n"

const (
	uuidProjects = "310f5a06-ffe4-6341-8ce1-627e11591a14"
	uuidSnapshot = "70acb1a3-70f2-3842-8f3b-d7a302b776e1"
)

func TestParseSubvolumeList(t *testing.T) {
	readOnly := map[uint64]bool{259: true, 260: true}
	topLevel := []Subvolume{
		{ID: 256, Path: "projects", UUID: uuidProjects, Generation: 9},
		{ID: 257, Path: "my share", UUID: "36712fa8-4b0b-eb4f-91c5-1f08532d614c", Generation: 9},
		{ID: 258, Path: "my share/nested sub", UUID: "82c0e5cf-99c2-f849-9f8c-e25fe0ddb3df", Generation: 9},
		{ID: 259, Path: ".fleetctl/snapshots/projects/projects.20261125T084600Z", UUID: uuidSnapshot, ParentUUID: uuidProjects, ReadOnly: true, Generation: 9},
		{ID: 260, Path: ".fleetctl/recv/projects.20261125T084600Z", UUID: "cd72c2f0-1912-6041-9afc-cc9b4f98e846", ReceivedUUID: uuidSnapshot, ReadOnly: true, Generation: 10},
		{ID: 262, Path: " lead space", UUID: "c6b0b100-dfef-9447-8d1f-f9704764a5d4", Generation: 17},
		{ID: 263, Path: "trail space ", UUID: "b191799d-aba8-2948-afc5-7b91d7eaa6c6", Generation: 17},
	}
	for _, tc := range []struct {
		name   string
		out    string
		rootID uint64
		within string
		want   []Subvolume
	}{
		{"top-level mount", listTopLevel, 5, "", topLevel},
		{"subvol= mount", listSubvolMount, 257, "", []Subvolume{
			{ID: 258, Path: "nested sub", UUID: "82c0e5cf-99c2-f849-9f8c-e25fe0ddb3df", Generation: 9},
		}},
		{"directory in the top level", listTopLevel, 5, ".fleetctl", []Subvolume{
			{ID: 259, Path: "snapshots/projects/projects.20261125T084600Z", UUID: uuidSnapshot, ParentUUID: uuidProjects, ReadOnly: true, Generation: 9},
			{ID: 260, Path: "recv/projects.20261125T084600Z", UUID: "cd72c2f0-1912-6041-9afc-cc9b4f98e846", ReceivedUUID: uuidSnapshot, ReadOnly: true, Generation: 10},
		}},
		{"directory in a subvol= mount", listSubvolMount, 257, "nested", nil},
		{"empty filesystem", "", 5, "", nil},
		{"name with a newline", "" +
			"ID 256 gen 7 parent 5 top level 5 parent_uuid - received_uuid - uuid 1d0c4f3e-0000-4000-8000-000000000001 path two\n" +
			"lines\n" +
			"ID 257 gen 8 parent 5 top level 5 parent_uuid - received_uuid - uuid 1d0c4f3e-0000-4000-8000-000000000002 path ID x\n",
			5, "", []Subvolume{
				{ID: 256, Path: "two\nlines", UUID: "1d0c4f3e-0000-4000-8000-000000000001", Generation: 7},
				{ID: 257, Path: "ID x", UUID: "1d0c4f3e-0000-4000-8000-000000000002", Generation: 8},
			}},
		{"cgen is read, unknown columns are skipped", "ID 256 gen 7 cgen 6 parent 5 top level 5 otime 2026-11-25 08:46:00 uuid 1d0c4f3e-0000-4000-8000-000000000001 path a b\n",
			5, "", []Subvolume{{ID: 256, Path: "a b", UUID: "1d0c4f3e-0000-4000-8000-000000000001", Generation: 7, CreationGeneration: 6}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := parseSubvolumeList([]byte(tc.out))
			if err != nil {
				t.Fatal(err)
			}
			got, err := subvolumesBelow(entries, readOnly, tc.rootID, tc.within)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", dump(got), dump(tc.want))
			}
		})
	}

	ro, err := parseSubvolumeList([]byte(listReadOnly))
	if err != nil || len(ro) != 2 || ro[0].ID != 259 || ro[1].ID != 260 || ro[1].Path != ".fleetctl/recv/projects.20261125T084600Z" {
		t.Errorf("parse of list -r = %+v, %v", ro, err)
	}

	for _, bad := range []string{
		"garbage\n",
		"ID x gen 1 parent 5 top level 5 path a\n",
		"ID 256 gen 1 parent 5 top level 5\n",
	} {
		if got, err := parseSubvolumeList([]byte(bad)); err == nil {
			t.Errorf("parseSubvolumeList(%q) = %+v, want an error", bad, got)
		}
	}
	// Without -p the parent is unknown, and so is where a path starts.
	entries, _ := parseSubvolumeList([]byte(listReadOnly))
	if _, err := subvolumesBelow(entries, nil, 5, ""); err == nil {
		t.Error("subvolumesBelow accepted entries without a parent")
	}
	// The pool's own subvolume must be in the list.
	entries, _ = parseSubvolumeList([]byte(listTopLevel))
	if _, err := subvolumesBelow(entries, nil, 999, ""); err == nil {
		t.Error("subvolumesBelow accepted a pool subvolume missing from the list")
	}
}

func dump(s []Subvolume) string {
	var b strings.Builder
	for _, v := range s {
		fmt.Fprintf(&b, "  %+v\n", v)
	}
	return b.String()
}

func TestParseQgroupShow(t *testing.T) {
	want := map[uint64]Qgroup{
		5:   {Referenced: 16384, Exclusive: 16384},
		256: {Referenced: 16384, Exclusive: 16384, MaxReferenced: 1073741824},
		257: {Referenced: 16384, Exclusive: 16384},
		258: {Referenced: 16384, Exclusive: 16384},
		259: {Referenced: 16384, Exclusive: 16384},
		260: {Referenced: 16384, Exclusive: 16384},
		262: {Referenced: 16384, Exclusive: 16384},
		263: {Referenced: 16384, Exclusive: 16384},
	}
	for _, tc := range []struct {
		name string
		out  string
		want map[uint64]Qgroup
	}{
		{"v6.2 qgroup show --raw -r -e", "" +
			"Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n" +
			"--------    ----------    ---------  --------------  -------------   ---- \n" +
			"0/5              16384        16384            none           none   <toplevel>\n" +
			"0/256            16384        16384      1073741824           none   projects\n" +
			"0/257            16384        16384            none           none   my share\n" +
			"0/258            16384        16384            none           none   my share/nested sub\n" +
			"0/259            16384        16384            none           none   .fleetctl/snapshots/projects/projects.20261125T084600Z\n" +
			"0/260            16384        16384            none           none   .fleetctl/recv/projects.20261125T084600Z\n" +
			"0/262            16384        16384            none           none    lead space\n" +
			"0/263            16384        16384            none           none   trail space \n" +
			"1/100            32768        32768            none           none   <0 member qgroups>\n",
			want},
		// Columns one space apart: only the dashes tell where names end.
		{"v6.2 qgroup show --raw -p -c -r -e", "" +
			"Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive Parent   Child         Path \n" +
			"--------    ----------    ---------  --------------  ------------- ------   -----         ---- \n" +
			"0/5              16384        16384            none           none -        -             <toplevel>\n" +
			"0/256            16384        16384      1073741824           none 1/100    -             projects\n" +
			"0/257            16384        16384            none           none 1/100    -             my share\n" +
			"0/258            16384        16384            none           none -        -             my share/nested sub\n" +
			"0/259            16384        16384            none           none -        -             .fleetctl/snapshots/projects/projects.20261125T084600Z\n" +
			"0/260            16384        16384            none           none -        -             .fleetctl/recv/projects.20261125T084600Z\n" +
			"0/262            16384        16384            none           none -        -              lead space\n" +
			"0/263            16384        16384            none           none -        -             trail space \n" +
			"1/100            32768        32768            none           none -        0/256,0/257   <0 member qgroups>\n",
			want},
		// btrfs-progs 4.x: lower-case short names, right-aligned, no Path
		// (laid out as its print_table_head and print_qgroup_column do).
		{"4.x qgroup show --raw -r -e", "" +
			"qgroupid         rfer         excl     max_rfer     max_excl \n" +
			"--------         ----         ----     --------     -------- \n" +
			"0/5             16384        16384         none         none \n" +
			"0/256        10502144     10502144    104857600         none \n" +
			"1/100           16384        16384         none         none \n",
			map[uint64]Qgroup{
				5:   {Referenced: 16384, Exclusive: 16384},
				256: {Referenced: 10502144, Exclusive: 10502144, MaxReferenced: 104857600},
			}},
		{"no qgroups", "" +
			"Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n" +
			"--------    ----------    ---------  --------------  -------------   ---- \n",
			map[uint64]Qgroup{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseQgroupShow([]byte(tc.out))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}

	for name, bad := range map[string]string{
		"human units (no --raw)": "" +
			"Qgroupid    Referenced    Exclusive   Path \n" +
			"--------    ----------    ---------   ---- \n" +
			"0/5           16.00KiB     16.00KiB   <toplevel>\n",
		"no max referenced column (no -r)": "" +
			"Qgroupid    Referenced    Exclusive   Path \n" +
			"--------    ----------    ---------   ---- \n" +
			"0/5              16384        16384   <toplevel>\n",
		"no header":   "0/5 16384 16384 none none\n",
		"empty":       "",
		"bad qgroup":  "qgroupid rfer excl max_rfer\n-------- ---- ---- --------\n5 1 1 none\n",
		"short row":   "qgroupid rfer excl max_rfer\n-------- ---- ---- --------\n0/5 1\n",
		"bad numbers": "qgroupid rfer excl max_rfer\n-------- ---- ---- --------\n0/5 x 1 none\n",
	} {
		if got, err := parseQgroupShow([]byte(bad)); err == nil {
			t.Errorf("%s: parseQgroupShow = %v, want an error", name, got)
		}
	}
}

// fakeBtrfs writes a stand-in for the btrfs binary that logs each call,
// LC_ALL first, one line per call with arguments separated by "|", then
// runs body.
func fakeBtrfs(t *testing.T, body string) (bin, log string) {
	t.Helper()
	dir := t.TempDir()
	bin, log = filepath.Join(dir, "btrfs"), filepath.Join(dir, "calls")
	script := "#!/bin/sh\n(IFS='|'; printf '%s\\n' \"LC_ALL=$LC_ALL|$*\") >> '" + log + "'\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// recorder is an Observer that remembers what it saw.
type recorder struct {
	mu  sync.Mutex
	ops []string
}

func (r *recorder) observe(op, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op+" "+path)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

func TestBtrfsCommandLines(t *testing.T) {
	bin, log := fakeBtrfs(t, "exit 0")
	var rec recorder
	b := NewBtrfs(bin)
	b.Observer = rec.observe
	ctx := context.Background()
	steps := []struct {
		do    func() error
		calls []string
		op    string
	}{
		{func() error { return b.CreateSubvolume(ctx, "/p/my share") }, []string{"subvolume|create|/p/my share"}, "create /p/my share"},
		{func() error { return b.Snapshot(ctx, "/p/a", "/p/.fleetctl/snapshots/a/a.1", true) }, []string{"subvolume|snapshot|-r|/p/a|/p/.fleetctl/snapshots/a/a.1"}, "snapshot /p/.fleetctl/snapshots/a/a.1"},
		{func() error { return b.Snapshot(ctx, "/p/a.1", "/p/a", false) }, []string{"subvolume|snapshot|/p/a.1|/p/a"}, "snapshot /p/a"},
		{func() error { return b.SetReadOnly(ctx, "/p/a", true) }, []string{"property|set|-ts|/p/a|ro|true"}, "set-ro /p/a"},
		{func() error { return b.SetReadOnly(ctx, "/p/a", false) }, []string{"property|set|-ts|/p/a|ro|false"}, "set-ro /p/a"},
		{func() error { return b.EnableQuota(ctx, "/p") }, []string{"quota|enable|/p", "quota|rescan|-w|/p"}, "enable-quota /p"},
		{func() error { return b.SetQuota(ctx, "/p/a", 1<<30) }, []string{"qgroup|limit|1073741824|/p/a"}, "set-quota /p/a"},
		{func() error { return b.SetQuota(ctx, "/p/a", 0) }, []string{"qgroup|limit|none|/p/a"}, "set-quota /p/a"},
	}
	var wantCalls, wantOps []string
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for _, c := range s.calls {
			wantCalls = append(wantCalls, "LC_ALL=C|"+c)
		}
		if s.op != "" {
			wantOps = append(wantOps, s.op)
		}
	}
	if got := calls(t, log); !slices.Equal(got, wantCalls) {
		t.Errorf("commands run:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	if got := rec.seen(); !slices.Equal(got, wantOps) {
		t.Errorf("observed %q, want %q", got, wantOps)
	}
}

func TestBtrfsRefusesWithoutRunning(t *testing.T) {
	bin, log := fakeBtrfs(t, "exit 0")
	var rec recorder
	b := NewBtrfs(bin)
	b.Observer = rec.observe
	ctx := context.Background()
	dir := t.TempDir() // a plain directory, on whatever filesystem
	existing := filepath.Join(dir, "existing")
	if err := os.Mkdir(existing, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(existing, link); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{dir, existing, link} {
		if err := b.DeleteSubvolume(ctx, path); !errors.Is(err, ErrNotSubvolume) || !strings.Contains(err.Error(), "delete subvolume "+path) {
			t.Errorf("DeleteSubvolume(%s) = %v, want %v naming the path", path, err, ErrNotSubvolume)
		}
	}
	if err := b.DeleteSubvolume(ctx, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DeleteSubvolume(missing) = %v, want not-exist", err)
	}
	if err := b.Snapshot(ctx, "/p/a", existing, true); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Snapshot onto an existing directory = %v, want %v", err, fs.ErrExist)
	}
	for name, err := range map[string]error{
		"CreateSubvolume": b.CreateSubvolume(ctx, "-rf"),
		"DeleteSubvolume": b.DeleteSubvolume(ctx, "x"),
		"Snapshot":        b.Snapshot(ctx, "/p/a", "b", false),
		"SetReadOnly":     b.SetReadOnly(ctx, "a", true),
		"EnableQuota":     b.EnableQuota(ctx, "p"),
		"SetQuota":        b.SetQuota(ctx, "a", 1),
		"MkdirAll":        b.MkdirAll(ctx, "a/b"),
	} {
		if err == nil || !strings.Contains(err.Error(), "not an absolute path") {
			t.Errorf("%s with a relative path = %v, want it refused", name, err)
		}
	}
	if _, err := b.Subvolumes(ctx, "p"); err == nil {
		t.Error("Subvolumes with a relative path succeeded")
	}
	// MkdirAll of a directory that exists changes nothing.
	if err := b.MkdirAll(ctx, existing); err != nil {
		t.Errorf("MkdirAll(existing) = %v", err)
	}
	if got := calls(t, log); len(got) != 0 {
		t.Errorf("refused calls ran btrfs: %q", got)
	}
	if got := rec.seen(); len(got) != 0 {
		t.Errorf("refused calls were observed: %q", got)
	}

	made := filepath.Join(dir, "a", "b")
	if err := b.MkdirAll(ctx, made); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(made); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("MkdirAll made %v, %v; want a 0700 directory", fi, err)
	}
	if got := rec.seen(); !slices.Equal(got, []string{"mkdir " + made}) {
		t.Errorf("observed %q, want one mkdir", got)
	}
}

func TestBtrfsCommandErrors(t *testing.T) {
	bin, _ := fakeBtrfs(t, "echo 'Create subvolume /p/x'\necho 'ERROR: cannot access /p: No such file or directory' >&2\necho '  second line  ' >&2\nexit 1")
	b := NewBtrfs(bin)
	err := b.CreateSubvolume(context.Background(), "/p/my x")
	want := "create subvolume /p/my x: " + bin + " subvolume create '/p/my x': exit status 1: ERROR: cannot access /p: No such file or directory; second line"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Killed != nil || !slices.Equal(ce.Args, []string{bin, "subvolume", "create", "/p/my x"}) {
		t.Errorf("CommandError = %+v", ce)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("want the *exec.ExitError with code 1 inside, got %v", err)
	}

	err = NewBtrfs(filepath.Join(t.TempDir(), "no-btrfs")).SetQuota(context.Background(), "/p", 1)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "set quota of /p to 1: ") || !strings.Contains(err.Error(), "no-btrfs qgroup limit 1 /p: ") {
		t.Errorf("missing binary: error = %v", err)
	}
}

func TestBtrfsKilledCommand(t *testing.T) {
	bin, _ := fakeBtrfs(t, "exec sleep 30")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := NewBtrfs(bin).CreateSubvolume(ctx, "/p/x")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the killed command took %v to return", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "subvolume create /p/x: killed (context deadline exceeded)") {
		t.Errorf("error = %v, want it to say the command was killed by the deadline", err)
	}
}

func TestCommandLineQuoting(t *testing.T) {
	got := commandLine([]string{"btrfs", "subvolume", "create", "/p/a b", "it's", "", "/p/ok-1.2_x"})
	want := `btrfs subvolume create '/p/a b' 'it'\''s' '' /p/ok-1.2_x`
	if got != want {
		t.Errorf("commandLine = %s, want %s", got, want)
	}
}

// Tests on real btrfs, in loop-mounted filesystems.

func realPool(t testing.TB) (*Btrfs, string, *recorder) {
	t.Helper()
	p := looppooltest.ForTest(t, 0)
	rec := &recorder{}
	b := NewBtrfs("")
	b.Observer = rec.observe
	return b, p.Path(), rec
}

func byPath(t testing.TB, b *Btrfs, pool string) map[string]Subvolume {
	t.Helper()
	list, err := b.Subvolumes(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Subvolume{}
	for _, s := range list {
		if _, dup := m[s.Path]; dup {
			t.Fatalf("path %q listed twice", s.Path)
		}
		m[s.Path] = s
	}
	return m
}

func keys(m map[string]Subvolume) []string {
	k := make([]string, 0, len(m))
	for p := range m {
		k = append(k, p)
	}
	slices.Sort(k)
	return k
}

func btrfsCmd(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("btrfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestBtrfsSubvolumes(t *testing.T) {
	b, pool, rec := realPool(t)
	ctx := context.Background()
	if got := byPath(t, b, pool); len(got) != 0 {
		t.Fatalf("new pool lists %v", keys(got))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.CreateSubvolume(ctx, pool+"/projects"))
	must(b.CreateSubvolume(ctx, pool+"/my share"))
	must(b.CreateSubvolume(ctx, pool+"/my share/nested sub"))
	must(b.MkdirAll(ctx, pool+"/"+SnapshotDir+"/projects"))
	snap := pool + "/" + SnapshotDir + "/projects/projects.20261125T084600Z"
	must(b.Snapshot(ctx, pool+"/projects", snap, true))
	must(b.Snapshot(ctx, snap, pool+"/restored", false))

	got := byPath(t, b, pool)
	want := []string{".fleetctl/snapshots/projects/projects.20261125T084600Z", "my share", "my share/nested sub", "projects", "restored"}
	if !slices.Equal(keys(got), want) {
		t.Fatalf("paths %q, want %q", keys(got), want)
	}
	proj, ro, rw := got["projects"], got[".fleetctl/snapshots/projects/projects.20261125T084600Z"], got["restored"]
	for path, s := range got {
		if s.ID < 256 || s.UUID == "" || s.Generation == 0 || s.ReceivedUUID != "" {
			t.Errorf("%s: %+v: want an ID, a UUID, a generation and no received UUID", path, s)
		}
		if s.ReadOnly != (path == ro.Path) {
			t.Errorf("%s: read-only %t", path, s.ReadOnly)
		}
	}
	if proj.ParentUUID != "" || ro.ParentUUID != proj.UUID || rw.ParentUUID != ro.UUID {
		t.Errorf("parent UUIDs: projects %q, snapshot %q (want %q), restored %q (want %q)",
			proj.ParentUUID, ro.ParentUUID, proj.UUID, rw.ParentUUID, ro.UUID)
	}
	if _, err := os.Create(snap + "/f"); err == nil {
		t.Error("wrote into the read-only snapshot")
	}

	// Nested subvolumes make delete fail, and nothing is deleted.
	err := b.DeleteSubvolume(ctx, pool+"/my share")
	if err == nil || !strings.Contains(err.Error(), "Directory not empty") || !strings.Contains(err.Error(), "btrfs subvolume delete") {
		t.Errorf("delete with a nested subvolume = %v, want btrfs's refusal", err)
	}
	if got := byPath(t, b, pool); len(got) != len(want) {
		t.Errorf("after the refused delete: %q", keys(got))
	}
	// A plain directory is refused before btrfs runs.
	before := len(rec.seen())
	if err := b.DeleteSubvolume(ctx, pool+"/.fleetctl"); !errors.Is(err, ErrNotSubvolume) {
		t.Errorf("delete of a directory = %v, want %v", err, ErrNotSubvolume)
	}
	if len(rec.seen()) != before {
		t.Error("the refused delete was observed")
	}

	must(b.DeleteSubvolume(ctx, pool+"/my share/nested sub"))
	must(b.DeleteSubvolume(ctx, pool+"/my share"))
	must(b.DeleteSubvolume(ctx, snap)) // read-only does not stop a delete
	want = []string{"projects", "restored"}
	if got := byPath(t, b, pool); !slices.Equal(keys(got), want) {
		t.Errorf("after deletes: %q, want %q", keys(got), want)
	}

	wantOps := []string{
		"create " + pool + "/projects", "create " + pool + "/my share", "create " + pool + "/my share/nested sub",
		"mkdir " + pool + "/.fleetctl/snapshots/projects", "snapshot " + snap, "snapshot " + pool + "/restored",
		"delete " + pool + "/my share", "delete " + pool + "/my share/nested sub", "delete " + pool + "/my share", "delete " + snap,
	}
	if got := rec.seen(); !slices.Equal(got, wantOps) {
		t.Errorf("observed\n%q\nwant\n%q", got, wantOps)
	}
}

func TestBtrfsSetReadOnly(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := context.Background()
	path := pool + "/share"
	if err := b.CreateSubvolume(ctx, path); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false, true} {
		if err := b.SetReadOnly(ctx, path, ro); err != nil {
			t.Fatal(err)
		}
		if got := byPath(t, b, pool)["share"].ReadOnly; got != ro {
			t.Errorf("after SetReadOnly(%t) the list says read-only %t", ro, got)
		}
	}
	err := b.SetReadOnly(ctx, pool+"/missing", true)
	if err == nil || !strings.Contains(err.Error(), "set read-only=true "+pool+"/missing: btrfs property set -ts "+pool+"/missing ro true: exit status 1: ERROR:") {
		t.Errorf("SetReadOnly of a missing path = %v", err)
	}
}

func TestBtrfsReceivedUUID(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := context.Background()
	if err := b.CreateSubvolume(ctx, pool+"/src"); err != nil {
		t.Fatal(err)
	}
	if err := b.Snapshot(ctx, pool+"/src", pool+"/src.1", true); err != nil {
		t.Fatal(err)
	}
	if err := b.MkdirAll(ctx, pool+"/recv"); err != nil {
		t.Fatal(err)
	}
	send := exec.Command("btrfs", "send", "-q", pool+"/src.1")
	recv := exec.Command("btrfs", "receive", "-q", pool+"/recv")
	var sendErr, recvErr bytes.Buffer
	send.Stderr, recv.Stderr = &sendErr, &recvErr
	pipe, err := send.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	recv.Stdin = pipe
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := send.Run(); err != nil {
		t.Fatalf("btrfs send: %v: %s", err, sendErr.String())
	}
	if err := recv.Wait(); err != nil {
		t.Fatalf("btrfs receive: %v: %s", err, recvErr.String())
	}
	got := byPath(t, b, pool)
	src, recvd := got["src.1"], got["recv/src.1"]
	if recvd.ReceivedUUID == "" || recvd.ReceivedUUID != src.UUID || !recvd.ReadOnly {
		t.Errorf("received %+v, want read-only with received UUID %s", recvd, src.UUID)
	}
	if src.ReceivedUUID != "" {
		t.Errorf("sent snapshot has received UUID %q", src.ReceivedUUID)
	}
	// btrfs-progs will not make a received subvolume writable by accident.
	if err := b.SetReadOnly(ctx, pool+"/recv/src.1", false); err == nil {
		t.Error("SetReadOnly(false) of a received subvolume succeeded")
	} else {
		t.Logf("as expected: %v", err)
	}
}

func TestBtrfsSubvolumesOfSubvolMountAndDirectory(t *testing.T) {
	p := looppooltest.ForTest(t, 0)
	b := NewBtrfs("")
	ctx := context.Background()
	pool := p.Path()
	for _, sub := range []string{"data", "data/share", "data/share/inner", "other", "data2"} {
		if err := b.CreateSubvolume(ctx, pool+"/"+sub); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.MkdirAll(ctx, pool+"/data/dir"); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateSubvolume(ctx, pool+"/data/dir/in dir"); err != nil {
		t.Fatal(err)
	}

	// Cleanups run last first: the unmount before the directory goes.
	mnt := filepath.Join(t.TempDir(), "data mount")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "btrfs", "-o", "subvol=data", p.Device(), mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount subvol=data: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})

	for _, tc := range []struct {
		pool string
		want []string
	}{
		{pool, []string{"data", "data/dir/in dir", "data/share", "data/share/inner", "data2", "other"}},
		{mnt, []string{"dir/in dir", "share", "share/inner"}},
		{mnt + "/dir", []string{"in dir"}},
		{pool + "/data/dir", []string{"in dir"}},
		{pool + "/data/share", []string{"inner"}},
		{mnt + "/share", []string{"inner"}},
	} {
		if got := keys(byPath(t, b, tc.pool)); !slices.Equal(got, tc.want) {
			t.Errorf("Subvolumes(%s) = %q, want %q", tc.pool, got, tc.want)
		}
	}
	if _, err := b.Subvolumes(ctx, "/proc"); err == nil || !strings.Contains(err.Error(), "not on a btrfs filesystem") {
		t.Errorf("Subvolumes(/proc) = %v", err)
	}
}

func TestBtrfsQuota(t *testing.T) {
	b, pool, rec := realPool(t)
	ctx := context.Background()
	share := pool + "/share"
	if err := b.CreateSubvolume(ctx, share); err != nil {
		t.Fatal(err)
	}
	if on, err := b.QuotaEnabled(ctx, pool); on || err != nil {
		t.Fatalf("QuotaEnabled on a new pool = %t, %v", on, err)
	}
	_, err := b.Qgroups(ctx, pool)
	if !errors.Is(err, ErrQuotaDisabled) || !strings.Contains(err.Error(), "read qgroups of "+pool) {
		t.Errorf("Qgroups without quotas = %v, want %v naming the pool", err, ErrQuotaDisabled)
	}
	if err := b.EnableQuota(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if on, err := b.QuotaEnabled(ctx, pool); !on || err != nil {
		t.Fatalf("QuotaEnabled after EnableQuota = %t, %v", on, err)
	}
	if err := b.EnableQuota(ctx, pool); err != nil {
		t.Errorf("enabling again: %v", err)
	}
	id := byPath(t, b, pool)["share"].ID

	if err := b.SetQuota(ctx, share, 50<<20); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("fleetctl"), 10<<20/8)
	if err := os.WriteFile(share+"/ten", data, 0o600); err != nil {
		t.Fatal(err)
	}
	btrfsCmd(t, "filesystem", "sync", pool) // qgroups count at commit
	q, err := b.Qgroups(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if got := q[id]; got.MaxReferenced != 50<<20 || got.Referenced < 10<<20 || got.Exclusive < 10<<20 || got.Referenced > 11<<20 {
		t.Errorf("qgroup 0/%d = %+v, want a 50 MiB limit and about 10 MiB used", id, got)
	}
	if _, ok := q[5]; !ok {
		t.Errorf("no qgroup for the top level in %v", q)
	}

	// The limit is on the share's qgroup: writing past it fails.
	if err := b.SetQuota(ctx, share, 15<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(share+"/more", data, 0o600); !errors.Is(err, syscall.EDQUOT) {
		t.Errorf("writing 20 MiB into a share limited to 15 MiB: %v, want %v", err, syscall.EDQUOT)
	}

	if err := b.SetQuota(ctx, share, 0); err != nil {
		t.Fatal(err)
	}
	if q, err = b.Qgroups(ctx, pool); err != nil || q[id].MaxReferenced != 0 {
		t.Errorf("after removing the limit: %+v, %v", q[id], err)
	}
	err = b.SetQuota(ctx, pool+"/missing", 1<<20)
	if err == nil || !strings.Contains(err.Error(), "btrfs qgroup limit 1048576 "+pool+"/missing: exit status 1: ERROR:") {
		t.Errorf("SetQuota of a missing path = %v", err)
	}
	wantOps := []string{"create " + share, "enable-quota " + pool, "enable-quota " + pool,
		"set-quota " + share, "set-quota " + share, "set-quota " + share, "set-quota " + pool + "/missing"}
	if got := rec.seen(); !slices.Equal(got, wantOps) {
		t.Errorf("observed %q, want %q", got, wantOps)
	}
}

func TestBtrfsErrorsCarryStderr(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := context.Background()
	if err := b.MkdirAll(ctx, pool+"/plain"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"create in a missing directory", b.CreateSubvolume(ctx, pool+"/no/x"),
			"create subvolume " + pool + "/no/x: btrfs subvolume create " + pool + "/no/x: exit status 1: ERROR: cannot access '" + pool + "/no': No such file or directory"},
		{"create over an existing path", b.CreateSubvolume(ctx, pool+"/plain"),
			"create subvolume " + pool + "/plain: btrfs subvolume create " + pool + "/plain: exit status 1: ERROR: target path already exists: " + pool + "/plain"},
		{"snapshot of a plain directory", b.Snapshot(ctx, pool+"/plain", pool+"/snap", true),
			"snapshot " + pool + "/plain to " + pool + "/snap: btrfs subvolume snapshot -r " + pool + "/plain " + pool + "/snap: exit status 1: ERROR: "},
		{"delete of nothing", b.DeleteSubvolume(ctx, pool+"/missing"),
			"delete subvolume " + pool + "/missing: lstat " + pool + "/missing: no such file or directory"},
	} {
		if tc.err == nil || !strings.HasPrefix(tc.err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, tc.err, tc.want)
		}
	}
}

func TestBtrfsIsBtrfs(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := context.Background()
	for path, want := range map[string]bool{pool: true, pool + "/missing": false, "/proc": false} {
		if got, err := b.IsBtrfs(ctx, path); got != want || err != nil {
			t.Errorf("IsBtrfs(%s) = %t, %v; want %t", path, got, err, want)
		}
	}
	// /tmp as stat(1) sees it: tmpfs or ext4 here, but trust no guess.
	out, err := exec.Command("stat", "-f", "-c", "%T", "/tmp").Output()
	if err != nil {
		t.Fatalf("stat -f /tmp: %v", err)
	}
	want := strings.TrimSpace(string(out)) == "btrfs"
	if got, err := b.IsBtrfs(ctx, "/tmp"); got != want || err != nil {
		t.Errorf("IsBtrfs(/tmp) = %t, %v; stat -f says %s", got, err, out)
	}
}

func TestBtrfsReadsChangeNothing(t *testing.T) {
	b, pool, rec := realPool(t)
	ctx := context.Background()
	if err := b.CreateSubvolume(ctx, pool+"/share"); err != nil {
		t.Fatal(err)
	}
	if err := b.EnableQuota(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := b.MkdirAll(ctx, pool+"/"+SnapshotDir); err != nil {
		t.Fatal(err)
	}
	before := len(rec.seen())
	if _, err := b.IsBtrfs(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subvolumes(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := b.QuotaEnabled(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Qgroups(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := b.MkdirAll(ctx, pool+"/"+SnapshotDir); err != nil {
		t.Fatal(err)
	}
	if got := rec.seen()[before:]; len(got) != 0 {
		t.Errorf("reads were observed as changes: %q", got)
	}
}

func TestBtrfsManySubvolumes(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := context.Background()
	if err := b.MkdirAll(ctx, pool+"/"+SnapshotDir+"/s p"); err != nil {
		t.Fatal(err)
	}
	want := make([]string, 0, 300)
	for i := range 300 {
		path := fmt.Sprintf("share %03d", i)
		if i%2 == 1 {
			path = fmt.Sprintf("%s/s p/s p.%03d", SnapshotDir, i)
		}
		if err := b.CreateSubvolume(ctx, pool+"/"+path); err != nil {
			t.Fatal(err)
		}
		want = append(want, path)
	}
	slices.Sort(want)
	if got := keys(byPath(t, b, pool)); !slices.Equal(got, want) {
		t.Errorf("listed %d subvolumes, want %d; first differences: %q", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []string) []string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return []string{a[i], b[i]}
		}
	}
	return nil
}

func BenchmarkSubvolumes1000(b *testing.B) {
	d, pool, _ := realPool(b)
	ctx := context.Background()
	for i := range 1000 {
		if err := d.CreateSubvolume(ctx, fmt.Sprintf("%s/share-%04d", pool, i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		list, err := d.Subvolumes(ctx, pool)
		if err != nil {
			b.Fatal(err)
		}
		if len(list) != 1000 {
			b.Fatalf("listed %d subvolumes, want 1000", len(list))
		}
	}
	cpu.Report()
}

// BenchmarkNoopReconcileRealBtrfs1000 is one reconcile run (observe, plan,
// execute nothing) of a converged pool of 1,000 shares with quotas on real
// btrfs. Its baseline is BenchmarkSubvolumes1000, the one listing it needs.
func BenchmarkNoopReconcileRealBtrfs1000(b *testing.B) {
	d, pool, _ := realPool(b)
	ctx := context.Background()
	var spec strings.Builder
	fmt.Fprintf(&spec, "version: 1\nappliances:\n  - {name: nas1, address: \"nas1:7400\", pools: [{name: tank, path: %s}]}\nshares:\n", pool)
	for i := range 1000 {
		fmt.Fprintf(&spec, "  - {name: share-%04d, appliance: nas1, pool: tank, quota: 1GiB}\n", i)
	}
	s, err := schema.Parse("fleet.yaml", []byte(spec.String()))
	if err != nil {
		b.Fatal(err)
	}
	run := func() int {
		actions := Plan(PlanInput{Spec: s, Appliance: "nas1", Observed: Observe(ctx, d, s, "nas1"), Now: time.Now()})
		n := 0
		for _, r := range Execute(ctx, d, actions) {
			if r.Err != nil {
				b.Fatalf("%s: %v", r.Action, r.Err)
			}
			n++
		}
		return n
	}
	run()
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		if n := run(); n != 0 {
			b.Fatalf("a converged pool planned %d actions", n)
		}
	}
	cpu.Report()
}

// cpuMeter measures the CPU time (user and system) of this process and of
// the commands it ran and waited for, from getrusage(RUSAGE_SELF) and
// getrusage(RUSAGE_CHILDREN): what a run costs the machine, which wall time
// on a shared machine does not say.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

func startCPU(b *testing.B) cpuMeter {
	return cpuMeter{b: b, start: cpuTime(b)}
}

// Report adds cpu-ms/op to the benchmark's results; call it after the
// b.Loop loop.
func (m cpuMeter) Report() {
	if m.b.N > 0 {
		m.b.ReportMetric(float64(cpuTime(m.b)-m.start)/float64(time.Millisecond)/float64(m.b.N), "cpu-ms/op")
	}
}

func cpuTime(b *testing.B) time.Duration {
	var sum time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatalf("getrusage: %v", err)
		}
		sum += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return sum
}
