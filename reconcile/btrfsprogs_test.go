package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Parsers of btrfs-progs' output, which the driver read until its reads
// went to the ioctls (btrfsioctl.go). The tests keep them as the oracle:
// on a real pool, what the ioctls read must be what btrfs-progs shows.

// parseSubvolumeList parses the output of "btrfs subvolume list" in its
// default layout, whatever columns were asked for:
//
//	ID 257 gen 9 parent 5 top level 5 parent_uuid - received_uuid - uuid 3671… path my share
//
// Keys come in a fixed order with path last, so the path is the rest of the
// line, spaces and all. btrfs prints names raw, so a line that does not
// start with "ID " continues the previous path after a newline in a name.
func parseSubvolumeList(out []byte) ([]listEntry, error) {
	text := strings.TrimSuffix(string(out), "\n")
	if text == "" {
		return nil, nil
	}
	var entries []listEntry
	for i, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "ID ") {
			if len(entries) == 0 || !entries[len(entries)-1].hasPath {
				return nil, fmt.Errorf("btrfs subvolume list: unexpected line %d: %q", i+1, line)
			}
			entries[len(entries)-1].Path += "\n" + line
			continue
		}
		e, err := parseListLine(line)
		if err != nil {
			return nil, fmt.Errorf("btrfs subvolume list: line %d: %v: %q", i+1, err, line)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func parseListLine(line string) (listEntry, error) {
	var e listEntry
	rest := line
	for rest != "" {
		if p, ok := strings.CutPrefix(rest, "path "); ok {
			e.Path, e.hasPath = p, true
			break
		}
		var key string
		if r, ok := strings.CutPrefix(rest, "top level "); ok {
			key, rest = "top level", r
		} else {
			key, rest, _ = strings.Cut(rest, " ")
		}
		rest = strings.TrimLeft(rest, " ")
		var val string
		val, rest, _ = strings.Cut(rest, " ")
		if key == "otime" && val != "-" { // "2026-11-25 08:46:00"
			_, rest, _ = strings.Cut(rest, " ")
		}
		rest = strings.TrimLeft(rest, " ")
		var err error
		switch key {
		case "ID":
			e.ID, err = strconv.ParseUint(val, 10, 64)
			e.hasID = true
		case "gen":
			e.Gen, err = strconv.ParseUint(val, 10, 64)
		case "cgen":
			e.CGen, err = strconv.ParseUint(val, 10, 64)
		case "parent":
			e.Parent, err = strconv.ParseUint(val, 10, 64)
			e.hasParent = true
		case "top level":
			e.TopLevel, err = strconv.ParseUint(val, 10, 64)
		case "uuid":
			e.UUID = dashless(val)
		case "parent_uuid":
			e.ParentUUID = dashless(val)
		case "received_uuid":
			e.ReceivedUUID = dashless(val)
		}
		if err != nil {
			return e, fmt.Errorf("%s: %v", key, err)
		}
	}
	if !e.hasID || !e.hasPath {
		return e, errors.New("no ID or no path")
	}
	return e, nil
}

// dashless turns btrfs's "-" (no such UUID) into "".
func dashless(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// parseQgroupShow parses "btrfs qgroup show --raw -r -e": a header, a line
// of dashes under each column name, then one row per qgroup. Columns are
// found by name, in the names of btrfs-progs 5.x and later (Qgroupid,
// Referenced, Exclusive, Max referenced, Max exclusive, Path) or of older
// ones (qgroupid, rfer, excl, max_rfer, max_excl). Every column but the
// last (Path, which may hold spaces) is one word in a row. "none" is no
// limit, 0.
func parseQgroupShow(out []byte) (map[uint64]Qgroup, error) {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) < 2 || strings.Trim(lines[1], "- ") != "" || !strings.Contains(lines[1], "-") {
		return nil, fmt.Errorf("btrfs qgroup show: no header in %q", firstLines(out))
	}
	header, dashes := lines[0], lines[1]
	col := map[string]int{}
	n := 0
	for i := 0; i < len(dashes); {
		if dashes[i] != '-' {
			i++
			continue
		}
		j := i
		for j < len(dashes) && dashes[j] == '-' {
			j++
		}
		name := ""
		if i < len(header) {
			name = header[i:min(j, len(header))]
		}
		name = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), " ", "_")
		switch name {
		case "referenced":
			name = "rfer"
		case "exclusive":
			name = "excl"
		case "max_referenced":
			name = "max_rfer"
		case "max_exclusive":
			name = "max_excl"
		}
		col[name] = n
		n++
		i = j
	}
	for _, want := range []string{"qgroupid", "rfer", "excl", "max_rfer"} {
		if _, ok := col[want]; !ok {
			return nil, fmt.Errorf("btrfs qgroup show: no %s column in header %q", want, header)
		}
	}
	qgroups := map[uint64]Qgroup{}
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		field := func(name string) string {
			if i := col[name]; i < len(f) {
				return f[i]
			}
			return ""
		}
		level, id, ok := strings.Cut(field("qgroupid"), "/")
		if !ok {
			return nil, fmt.Errorf("btrfs qgroup show: unexpected line %q", line)
		}
		if level != "0" {
			continue
		}
		var q Qgroup
		sid, err := strconv.ParseUint(id, 10, 64)
		if err == nil {
			q.Referenced, err = parseQgroupBytes(field("rfer"))
		}
		if err == nil {
			q.Exclusive, err = parseQgroupBytes(field("excl"))
		}
		if err == nil {
			q.MaxReferenced, err = parseQgroupBytes(field("max_rfer"))
		}
		if err != nil {
			return nil, fmt.Errorf("btrfs qgroup show: line %q: %v", line, err)
		}
		qgroups[sid] = q
	}
	return qgroups, nil
}

func parseQgroupBytes(s string) (uint64, error) {
	if s == "none" || s == "-" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// firstLines is the start of a command's output, for an error message.
func firstLines(out []byte) string {
	s := string(out)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// TestBtrfsReadsMatchBtrfsProgs checks the driver's ioctl reads against
// btrfs-progs on a real pool: Subvolumes against "btrfs inspect-internal
// rootid", "btrfs subvolume list -a -puqR -gc" and "btrfs subvolume list
// -r"; Qgroups against "btrfs qgroup show --raw -r -e".
func TestBtrfsReadsMatchBtrfsProgs(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.EnableQuota(ctx, pool))
	for _, sub := range []string{"projects", "my share", "my share/nested sub", " lead space", "trail space ", "gone"} {
		must(b.CreateSubvolume(ctx, pool+"/"+sub))
	}
	must(b.MkdirAll(ctx, pool+"/"+SnapshotDir+"/projects"))
	must(b.MkdirAll(ctx, pool+"/deep/er/still"))
	must(b.CreateSubvolume(ctx, pool+"/deep/er/still/sub"))
	must(b.MkdirAll(ctx, pool+"/my share/dir"))
	must(b.CreateSubvolume(ctx, pool+"/my share/dir/in share"))
	snap := pool + "/" + SnapshotDir + "/projects/projects.20261125T084600Z"
	must(b.Snapshot(ctx, pool+"/projects", snap, true))
	must(b.MkdirAll(ctx, pool+"/recv"))
	send := exec.Command("btrfs", "send", "-q", snap)
	recv := exec.Command("btrfs", "receive", "-q", pool+"/recv")
	pipe, err := send.StdoutPipe()
	must(err)
	recv.Stdin = pipe
	must(recv.Start())
	must(send.Run())
	must(recv.Wait())
	must(b.SetQuota(ctx, pool+"/projects", 7<<20))
	must(b.SetQuota(ctx, pool+"/my share", 1<<30))
	must(os.WriteFile(pool+"/projects/f", make([]byte, 1<<20), 0o600))
	gone := byPath(t, b, pool)["gone"].ID
	must(b.DeleteSubvolume(ctx, pool+"/gone"))
	btrfsCmd(t, "filesystem", "sync", pool)

	gotQ, err := b.Qgroups(ctx, pool)
	must(err)
	wantQ, err := parseQgroupShow([]byte(btrfsCmd(t, "qgroup", "show", "--raw", "-r", "-e", pool)))
	must(err)
	// The cleaner removes the deleted subvolume's qgroup whenever it
	// comes to it, maybe between the two reads.
	delete(gotQ, gone)
	delete(wantQ, gone)
	if !reflect.DeepEqual(gotQ, wantQ) {
		t.Errorf("Qgroups:\n%+v\nbtrfs-progs:\n%+v", gotQ, wantQ)
	}
	if len(gotQ) < 9 {
		t.Errorf("only %d qgroups: %+v", len(gotQ), gotQ)
	}

	// btrfs qgroup show prints a name with a newline as it is, which its
	// parser cannot tell from a new row; the ioctls read IDs, not names.
	must(b.CreateSubvolume(ctx, pool+"/new\nline"))
	q2, err := b.Qgroups(ctx, pool)
	must(err)
	if id := byPath(t, b, pool)["new\nline"].ID; id == 0 {
		t.Error("the subvolume with a newline in its name is not listed")
	} else if _, ok := q2[id]; !ok {
		t.Errorf("no qgroup 0/%d for the subvolume with a newline in its name: %+v", id, q2)
	}

	for _, dir := range []string{pool, pool + "/" + SnapshotDir, pool + "/my share", pool + "/deep/er"} {
		got, err := b.Subvolumes(ctx, dir)
		must(err)
		rootID, err := strconv.ParseUint(strings.TrimSpace(btrfsCmd(t, "inspect-internal", "rootid", dir)), 10, 64)
		must(err)
		all, err := parseSubvolumeList([]byte(btrfsCmd(t, "subvolume", "list", "-a", "-p", "-u", "-q", "-R", "-g", "-c", dir)))
		must(err)
		ro, err := parseSubvolumeList([]byte(btrfsCmd(t, "subvolume", "list", "-r", dir)))
		must(err)
		readOnly := map[uint64]bool{}
		for _, e := range ro {
			readOnly[e.ID] = true
		}
		within, err := pathInSubvolume(dir)
		must(err)
		want, err := subvolumesBelow(all, readOnly, rootID, within)
		must(err)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Subvolumes(%s):\n%+v\nbtrfs-progs:\n%+v", dir, got, want)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Subvolumes(canceled, pool); !errors.Is(err, context.Canceled) {
		t.Errorf("Subvolumes with an ended context = %v", err)
	}
	if _, err := b.Qgroups(canceled, pool); !errors.Is(err, context.Canceled) || errors.Is(err, ErrQuotaDisabled) {
		t.Errorf("Qgroups with an ended context = %v", err)
	}
}
