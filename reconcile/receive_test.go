package reconcile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// untouchable is a body a refused receive must not read.
type untouchable struct{ t *testing.T }

func (u untouchable) Read(p []byte) (int, error) {
	u.t.Error("a refused receive read the stream")
	return 0, io.EOF
}

// TestReceiveRefuses refuses every sender the spec does not allow, reading
// nothing and changing nothing.
func TestReceiveRefuses(t *testing.T) {
	spec := mustSpec(t, `  - {name: projects, appliance: nas1, pool: tank, replication: {to: nas2/tank, schedule: every 1h, retention: 1h}}
  - {name: local, appliance: nas1, pool: tank}
  - {name: gone, appliance: nas1, pool: tank, state: absent, replication: {to: nas2/tank, schedule: every 1h, retention: 1h}}
`)
	good := reconcile.SendHeader{ID: "a1", Share: "projects", From: "nas1", Snapshot: "20261125T120000Z", UUID: "u1"}
	for _, c := range []struct {
		name      string
		receiver  string // this appliance; nas2 unless set
		peer      string
		epoch     uint64 // the share's current epoch
		header    func(h *reconcile.SendHeader)
		says      string
		trailless bool // no trail: the share is not the fleet's
	}{
		{name: "share not in the spec", peer: "nas1", header: func(h *reconcile.SendHeader) { h.Share = "nope" }, says: `share "nope" is not in the spec`, trailless: true},
		{name: "share not replicated", peer: "nas1", header: func(h *reconcile.SendHeader) { h.Share = "local" }, says: "share local has no replication"},
		{name: "share absent", peer: "nas1", header: func(h *reconcile.SendHeader) { h.Share = "gone" }, says: "marked state: absent"},
		{name: "sender not the share's appliance", peer: "nas2", says: "replicated from nas1, not from nas2"},
		{name: "appliance not in the fleet", peer: "mallory", says: "replicated from nas1, not from mallory"},
		{name: "not this appliance's share", receiver: "nas3", peer: "nas1", says: "replicates to nas2, not to this appliance nas3"},
		{name: "header lies about the sender", peer: "nas1", header: func(h *reconcile.SendHeader) { h.From = "nas9" }, says: "says it comes from nas9"},
		{name: "snapshot is a path", peer: "nas1", header: func(h *reconcile.SendHeader) { h.Snapshot = "../../etc" }, says: "is not a stamp"},
		{name: "parent is a path", peer: "nas1", header: func(h *reconcile.SendHeader) { h.Parent, h.ParentUUID = "x/y", "u0" }, says: "parent \"x/y\" is not a stamp"},
		{name: "no ID", peer: "nas1", header: func(h *reconcile.SendHeader) { h.ID = "" }, says: "ID"},
		{name: "older epoch", peer: "nas1", epoch: 3, header: func(h *reconcile.SendHeader) { h.Epoch = 2 }, says: "from epoch 2 of share projects, which is at epoch 3 (active on nas1)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDisk(t)
			trail := &trailLog{}
			rv := &reconcile.Receiver{Appliance: "nas2", Driver: d, Trail: trail.add, Active: func(string) schema.Activation { return schema.Activation{Epoch: c.epoch} }}
			if c.receiver != "" {
				rv.Appliance = c.receiver
			}
			h := good
			if c.header != nil {
				c.header(&h)
			}
			_, err := rv.Receive(t.Context(), spec, c.peer, h, untouchable{t})
			if !errors.Is(err, reconcile.ErrRefused) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Receive: %v; want ErrRefused saying %q", err, c.says)
			}
			if d.Mutations() != 0 {
				t.Errorf("a refused receive changed %v", d.Log())
			}
			entries := trail.all()
			switch {
			case c.trailless && len(entries) != 0:
				t.Errorf("trail for a share not in the spec: %+v", entries)
			case !c.trailless && (len(entries) != 1 || entries[0].Result != reconcile.ResultRefused || entries[0].From != c.peer || entries[0].Error != err.Error()):
				t.Errorf("trail: %+v; want one refused entry from %s", entries, c.peer)
			}
		})
	}
}

// TestReceiveBusy refuses a second receive of a share while one runs.
func TestReceiveBusy(t *testing.T) {
	spec := mustSpec(t, "  - {name: projects, appliance: nas1, pool: tank, replication: {to: nas2/tank, schedule: every 1h, retention: 1h}}\n")
	d := newDisk(t)
	trail := &trailLog{}
	rv := &reconcile.Receiver{Appliance: "nas2", Driver: d, Trail: trail.add}
	if !rv.Claim("projects") {
		t.Fatal("claim failed")
	}
	h := reconcile.SendHeader{ID: "a1", Share: "projects", From: "nas1", Snapshot: "20261125T120000Z"}
	_, err := rv.Receive(t.Context(), spec, "nas1", h, untouchable{t})
	if !errors.Is(err, reconcile.ErrBusy) {
		t.Fatalf("Receive while another runs: %v, want ErrBusy", err)
	}
	if e := trail.all(); len(e) != 1 || e[0].Result != reconcile.ResultRefused {
		t.Errorf("trail: %+v", e)
	}
	if err := rv.CleanStaging(t.Context(), spec); err != nil || d.Mutations() != 0 {
		t.Errorf("CleanStaging of a busy share: %v, %v", err, d.Log())
	}
	rv.Release("projects")
}

// TestReceiveRejectsWrongStream sends streams that do not match their
// header: the target keeps none of them.
func TestReceiveRejectsWrongStream(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	ctx := t.Context()
	fl.write("a.bin", 64<<10, 1)
	base := fl.run(ctx, reconcile.ResultOK)

	for _, c := range []struct {
		name   string
		header func(h *reconcile.SendHeader)
		says   string
	}{
		{"another name", func(h *reconcile.SendHeader) { h.Snapshot = "20261125T235959Z" }, "created no 20261125T235959Z"},
		{"another UUID", func(h *reconcile.SendHeader) { h.UUID = "0d6f1c52-0000-0000-0000-000000000000" }, "but the header says 0d6f1c52"},
		{"unknown parent", func(h *reconcile.SendHeader) { h.ParentUUID = "0d6f1c52-0000-0000-0000-000000000000" }, "no longer holds the parent"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fl.clock.Advance(time.Hour)
			fl.tr.set(func(tr *pipeTransport) { tr.header = c.header })
			defer fl.tr.set(func(tr *pipeTransport) { tr.header = nil })
			e := fl.run(ctx, reconcile.ResultFailed)
			if !strings.Contains(e.Error, c.says) {
				t.Errorf("error %q does not say %q", e.Error, c.says)
			}
			if got, want := fl.received(), []string{"projects." + base.Snapshot}; !slices.Equal(got, want) {
				t.Errorf("received: %q, want %q", got, want)
			}
		})
	}

	// A stream whose subvolume has a final-looking name: it is not what
	// the header announced, so it goes.
	src := filepath.Join(fl.src, "crafted")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(src, "projects.20991231T000000Z")
	if err := fl.btrfs.Snapshot(ctx, fl.share(), snap, true); err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	if err := fl.btrfs.Send(ctx, snap, "", &stream); err != nil {
		t.Fatal(err)
	}
	h := reconcile.SendHeader{ID: "crafted", Share: "projects", From: "nas1", Snapshot: "20991231T000000Z"}
	if _, err := fl.rv.Receive(ctx, fl.spec, "nas1", h, &stream); err == nil || !strings.Contains(err.Error(), `it created ["projects.20991231T000000Z"]`) {
		t.Errorf("Receive of a stream named like a final snapshot: %v", err)
	}
	if got, want := fl.received(), []string{"projects." + base.Snapshot}; !slices.Equal(got, want) {
		t.Errorf("received: %q, want %q", got, want)
	}
}

// TestCleanStaging deletes what failed receives left behind and keeps the
// completed receives.
func TestCleanStaging(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	ctx := t.Context()
	fl.write("a.bin", 64<<10, 1)
	base := fl.run(ctx, reconcile.ResultOK)

	b, dir := fl.btrfs, fl.receivedDir()
	tmp := filepath.Join(fl.dst, "tmp")
	for _, err := range []error{
		b.CreateSubvolume(ctx, tmp),
		b.CreateSubvolume(ctx, filepath.Join(dir, "projects.20261125T130000Z")),     // final name, writable
		b.Snapshot(ctx, tmp, filepath.Join(dir, "20261125T140000Z"), true),          // staging name
		b.Snapshot(ctx, tmp, filepath.Join(dir, "projects.20261125T150000Z"), true), // final name, no received UUID
		b.CreateSubvolume(ctx, filepath.Join(dir, "junk")),                          // any other name
		b.MkdirAll(ctx, filepath.Join(dir, "deep")),
		b.CreateSubvolume(ctx, filepath.Join(dir, "deep", "projects.20261125T160000Z")), // not directly in the directory
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := fl.rv.CleanStaging(ctx, fl.spec); err != nil {
		t.Fatal(err)
	}
	if got, want := fl.received(), []string{"projects." + base.Snapshot}; !slices.Equal(got, want) {
		t.Errorf("after CleanStaging: %q, want %q", got, want)
	}
	// Plain directories are not receives; they stay.
	if _, err := os.Stat(filepath.Join(dir, "deep")); err != nil {
		t.Error(err)
	}
	fl.clock.Advance(time.Hour)
	if e := fl.run(ctx, reconcile.ResultOK); e.Kind != reconcile.KindIncremental || e.Parent != base.Snapshot {
		t.Errorf("attempt after CleanStaging: %+v", e)
	}
}

// craftedStream builds a btrfs send stream (version 1) command by command,
// as a sender that means harm would.
type craftedStream struct{ bytes.Buffer }

func newCraftedStream() *craftedStream {
	s := &craftedStream{}
	s.WriteString("btrfs-stream\x00")
	s.Write([]byte{1, 0, 0, 0})
	return s
}

// The commands and attributes of btrfs's send.h.
const (
	cmdSubvol, cmdMkfile, cmdMkdir, cmdSymlink, cmdRename, cmdWrite, cmdEnd = 1, 3, 4, 8, 9, 15, 21
	attrUUID, attrCtransid, attrIno, attrPath, attrPathTo, attrPathLink     = 1, 2, 3, 15, 16, 17
	attrOffset, attrData                                                    = 18, 19
)

func tlv(typ uint16, data []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, typ)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func tlvU64(typ uint16, v uint64) []byte {
	return tlv(typ, binary.LittleEndian.AppendUint64(nil, v))
}

func (s *craftedStream) cmd(c uint16, attrs ...[]byte) *craftedStream {
	payload := bytes.Join(attrs, nil)
	h := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	h = binary.LittleEndian.AppendUint16(h, c)
	h = append(h, 0, 0, 0, 0)
	// btrfs's CRC32C: seed 0, no final inversion.
	sum := ^crc32.Update(^uint32(0), crc32.MakeTable(crc32.Castagnoli), append(h, payload...))
	binary.LittleEndian.PutUint32(h[6:], sum)
	s.Write(h)
	s.Write(payload)
	return s
}

func (s *craftedStream) subvol(name string, uuid [16]byte) *craftedStream {
	return s.cmd(cmdSubvol, tlv(attrPath, []byte(name)), tlv(attrUUID, uuid[:]), tlvU64(attrCtransid, 7))
}

func (s *craftedStream) mkfile(path string, ino uint64) *craftedStream {
	return s.cmd(cmdMkfile, tlv(attrPath, []byte(path)), tlvU64(attrIno, ino))
}

func (s *craftedStream) mkdir(path string, ino uint64) *craftedStream {
	return s.cmd(cmdMkdir, tlv(attrPath, []byte(path)), tlvU64(attrIno, ino))
}

func (s *craftedStream) write(path, data string) *craftedStream {
	return s.cmd(cmdWrite, tlv(attrPath, []byte(path)), tlvU64(attrOffset, 0), tlv(attrData, []byte(data)))
}

func (s *craftedStream) symlink(path string, ino uint64, target string) *craftedStream {
	return s.cmd(cmdSymlink, tlv(attrPath, []byte(path)), tlvU64(attrIno, ino), tlv(attrPathLink, []byte(target)))
}

func (s *craftedStream) rename(from, to string) *craftedStream {
	return s.cmd(cmdRename, tlv(attrPath, []byte(from)), tlv(attrPathTo, []byte(to)))
}

func (s *craftedStream) end() *craftedStream { return s.cmd(cmdEnd) }

// TestReceiveRemovesStrays sends crafted streams that write beside their
// subvolume, through ".." or a symlink to "/" (which --chroot turns into
// the received directory), or rename an earlier receive. Each fails, and
// leaves the received directory holding just the earlier receive, as it
// was; nothing outside it changes.
func TestReceiveRemovesStrays(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	ctx := t.Context()
	fl.write("a.bin", 64<<10, 1)
	base := fl.run(ctx, reconcile.ResultOK)
	earlier := "projects." + base.Snapshot
	outside := func() map[string]string {
		all := treeHashes(t, fl.dst)
		for p := range all {
			if p == reconcile.ReceivedDir+"/projects" || strings.HasPrefix(p, reconcile.ReceivedDir+"/projects/") {
				delete(all, p)
			}
		}
		return all
	}
	was := outside()
	uuid := [16]byte{0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab}
	const uuidText = "abababab-abab-abab-abab-abababababab"

	for i, c := range []struct {
		name   string
		stream func(stamp string) *craftedStream
		says   string
	}{
		{"dot-dot", func(stamp string) *craftedStream {
			return newCraftedStream().subvol(stamp, uuid).
				mkfile("../stray", 257).write("../stray", "hello").
				mkdir("../dir", 258).mkdir("../dir/sub", 259).mkfile("../dir/sub/f", 260).end()
		}, `the stream wrote ["dir" "stray"] beside`},
		{"symlink to the root", func(stamp string) *craftedStream {
			return newCraftedStream().subvol(stamp, uuid).
				symlink("root", 257, "/").mkdir("root/d", 258).mkfile("root/d/f", 259).write("root/d/f", "hello").
				symlink("../link", 260, "/etc").end()
		}, `the stream wrote ["d" "link"] beside`},
		{"fails after writing beside", func(stamp string) *craftedStream {
			return newCraftedStream().subvol(stamp, uuid).
				mkfile("../stray", 257).write("../stray", "hello").
				write("missing", "no such file").end()
		}, "btrfs receive"},
		{"moves its subvolume into a stray directory", func(stamp string) *craftedStream {
			return newCraftedStream().subvol(stamp, uuid).
				mkdir("../d", 257).rename("../"+stamp, "../d/"+stamp).end()
		}, ""},
		{"renames an earlier receive", func(stamp string) *craftedStream {
			return newCraftedStream().subvol(stamp, uuid).
				rename("../"+earlier, "../moved").mkdir("../"+earlier, 257).end()
		}, "renamed or deleted earlier receives: " + reconcile.ReceivedDir + "/projects/" + earlier + " renamed to " + reconcile.ReceivedDir + "/projects/moved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stamp := fmt.Sprintf("20261125T13%02d00Z", i)
			h := reconcile.SendHeader{ID: fmt.Sprint("crafted", i), Share: "projects", From: "nas1", Snapshot: stamp, UUID: uuidText}
			_, err := fl.rv.Receive(ctx, fl.spec, "nas1", h, c.stream(stamp))
			if err == nil || !strings.Contains(err.Error(), c.says) {
				t.Errorf("Receive: %v; want an error saying %q", err, c.says)
			}
			if err != nil && strings.Contains(err.Error(), "undoing") {
				t.Errorf("Receive did not undo what it did: %v", err)
			}
			ents, rerr := os.ReadDir(fl.receivedDir())
			if rerr != nil {
				t.Fatal(rerr)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if want := []string{earlier}; !slices.Equal(names, want) {
				t.Errorf("the received directory holds %q, want %q", names, want)
			}
			if got, want := fl.received(), []string{earlier}; !slices.Equal(got, want) {
				t.Errorf("received: %q, want %q", got, want)
			}
			fl.checkSame(base.Snapshot)
			if now := outside(); !maps.Equal(now, was) {
				t.Errorf("outside the received directory, nas2 changed: %v, was %v", now, was)
			}
		})
	}

	fl.clock.Advance(time.Hour)
	if e := fl.run(ctx, reconcile.ResultOK); e.Kind != reconcile.KindIncremental || e.Parent != base.Snapshot {
		t.Errorf("attempt after the crafted streams: %+v", e)
	}
}
