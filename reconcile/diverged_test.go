package reconcile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetctl/fleetctl/reconcile"
)

// A dump btrfs-progs 6.2 printed for: ch rewritten, del deleted, a new
// file in dir, a new file with a space and a backslash in its name, mv
// moved into dir, keep only read (its atime), the directory gone and its
// file deleted, "dir/sp ace" appended to.
const sampleDump = `snapshot        ./d                             uuid=3b58 transid=8 parent_uuid=acf5 parent_transid=7
rename          ./d/gone                        dest=./d/o258-7-0
utimes          ./d/keep                        atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
update_extent   ./d/ch                          offset=0 len=3
utimes          ./d/ch                          atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
unlink          ./d/del
update_extent   ./d/dir/sp\ ace                 offset=0 len=4
utimes          ./d/dir/sp\ ace                 atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
link            ./d/dir/moved                   dest=mv
unlink          ./d/mv
utimes          ./d/dir/moved                   atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
unlink          ./d/o258-7-0/x
rmdir           ./d/o258-7-0
mkfile          ./d/o265-8-0
rename          ./d/o265-8-0                    dest=./d/dir/new
update_extent   ./d/dir/new                     offset=0 len=4
chown           ./d/dir/new                     gid=0 uid=0
chmod           ./d/dir/new                     mode=644
utimes          ./d/dir/new                     atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
mkfile          ./d/o266-8-0
rename          ./d/o266-8-0                    dest=./d/a\\b\ c
update_extent   ./d/a\\b\ c                     offset=0 len=5
utimes          ./d/a\\b\ c                     atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
utimes          ./d/                            atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
utimes          ./d/dir                         atime=2026-11-29T20:53:52+0000 mtime=2026-11-29T20:53:52+0000 ctime=2026-11-29T20:53:52+0000
`

func TestParseDump(t *testing.T) {
	got, err := reconcile.ParseDump(strings.NewReader(sampleDump))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range got {
		s := string(c.Kind) + " " + c.Path
		if c.From != "" {
			s += " from " + c.From
		}
		if c.Dir {
			s += " (dir)"
		}
		if c.TimesOnly {
			s += " (times)"
		}
		lines = append(lines, s)
	}
	want := []string{
		"changed  (times)",
		`added a\b c`,
		"changed ch",
		"deleted del",
		"changed dir (times)",
		"added dir/new",
		"changed dir/sp ace",
		"renamed dir/moved from mv",
		"deleted gone (dir)",
		"deleted gone/x",
		"changed keep (times)",
	}
	if strings.Join(lines, "\n") != strings.Join(sortedCopy(want), "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(sortedCopy(want), "\n"))
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	// sorted by path, as ParseDump sorts
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if pathOf(out[j]) < pathOf(out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func pathOf(line string) string {
	_, rest, _ := strings.Cut(line, " ")
	if i := strings.Index(rest, " from "); i >= 0 {
		rest = rest[:i]
	}
	return strings.TrimSuffix(strings.TrimSuffix(rest, " (times)"), " (dir)")
}

func TestParseDumpReplacedAndRecreated(t *testing.T) {
	dump := `snapshot ./s uuid=1
unlink ./s/f
mkfile ./s/o300-9-0
rename ./s/o300-9-0 dest=./s/f
mkfile ./s/o301-9-0
rename ./s/o301-9-0 dest=./s/tmp
unlink ./s/tmp
rename ./s/olddir dest=./s/newdir
truncate ./s/newdir/inner size=0
`
	got, err := reconcile.ParseDump(strings.NewReader(dump))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range got {
		lines = append(lines, string(c.Kind)+" "+c.Path+" "+c.From)
	}
	want := "changed f \nrenamed newdir olddir\nchanged newdir/inner "
	if strings.Join(lines, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), want)
	}
	if _, err := reconcile.ParseDump(strings.NewReader("unlink ./s/f\n")); err == nil {
		t.Error("a dump without its snapshot line parsed")
	}
	if _, err := reconcile.ParseDump(strings.NewReader("snapshot ./s\nunlink ./t/f\n")); err == nil {
		t.Error("a path outside the snapshot parsed")
	}
}

func TestResolve(t *testing.T) {
	base, div := t.TempDir(), t.TempDir()
	write := func(dir, name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(base, "del", "12345")
	write(div, "new", "abc")
	if err := os.Mkdir(filepath.Join(div, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	in := []reconcile.Change{
		{Kind: reconcile.ChangeAdded, Path: "new"},
		{Kind: reconcile.ChangeDeleted, Path: "del"},
		{Kind: reconcile.ChangeChanged, Path: "sub", TimesOnly: true},
		{Kind: reconcile.ChangeChanged, Path: "missing"},
	}
	got := reconcile.Resolve(in, base, div)
	if len(got) != 3 {
		t.Fatalf("got %+v", got)
	}
	if got[0].Size == nil || *got[0].Size != 3 || got[1].Size == nil || *got[1].Size != 5 || got[2].Size != nil {
		t.Errorf("sizes: %+v", got)
	}
}

func TestDivergedBase(t *testing.T) {
	svs := []reconcile.Subvolume{
		{Path: "projects", UUID: "P2", Generation: 50},
		{Path: ".fleetctl/replication/projects/20261101T000000Z", ParentUUID: "P1", CreationGeneration: 10},
		{Path: ".fleetctl/replication/projects/20261102T000000Z", ParentUUID: "P1", CreationGeneration: 20},
		{Path: ".fleetctl/replication/projects/20261104T000000Z", ParentUUID: "P1", CreationGeneration: 40},
		{Path: ".fleetctl/replication/projects/20261103T000000Z", ParentUUID: "P2", CreationGeneration: 25},
		{Path: ".fleetctl/replication/other/20261102T000000Z", ParentUUID: "P1", CreationGeneration: 21},
	}
	d := reconcile.Subvolume{Path: ".fleetctl/diverged/projects.20261102T120000Z", ParentUUID: "P1", CreationGeneration: 30}
	b, ok := reconcile.DivergedBase("projects", d, svs)
	if !ok || b.Path != ".fleetctl/replication/projects/20261102T000000Z" {
		t.Errorf("base %+v %v", b, ok)
	}
	if _, ok := reconcile.DivergedBase("projects", reconcile.Subvolume{ParentUUID: "P3", CreationGeneration: 99}, svs); ok {
		t.Error("a base of another subvolume")
	}
}
