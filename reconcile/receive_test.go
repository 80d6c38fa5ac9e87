package reconcile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
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
	good := SendHeader{ID: "a1", Share: "projects", From: "nas1", Snapshot: "20261125T120000Z", UUID: "u1"}
	for _, c := range []struct {
		name      string
		receiver  string // this appliance; nas2 unless set
		peer      string
		epoch     uint64 // the share's current epoch
		header    func(h *SendHeader)
		says      string
		trailless bool // no trail: the share is not the fleet's
	}{
		{name: "share not in the spec", peer: "nas1", header: func(h *SendHeader) { h.Share = "nope" }, says: `share "nope" is not in the spec`, trailless: true},
		{name: "share not replicated", peer: "nas1", header: func(h *SendHeader) { h.Share = "local" }, says: "share local has no replication"},
		{name: "share absent", peer: "nas1", header: func(h *SendHeader) { h.Share = "gone" }, says: "marked state: absent"},
		{name: "sender not the share's appliance", peer: "nas2", says: "replicated from nas1, not from nas2"},
		{name: "appliance not in the fleet", peer: "mallory", says: "replicated from nas1, not from mallory"},
		{name: "not this appliance's share", receiver: "nas3", peer: "nas1", says: "replicates to nas2, not to this appliance nas3"},
		{name: "header lies about the sender", peer: "nas1", header: func(h *SendHeader) { h.From = "nas9" }, says: "says it comes from nas9"},
		{name: "snapshot is a path", peer: "nas1", header: func(h *SendHeader) { h.Snapshot = "../../etc" }, says: "is not a stamp"},
		{name: "parent is a path", peer: "nas1", header: func(h *SendHeader) { h.Parent, h.ParentUUID = "x/y", "u0" }, says: "parent \"x/y\" is not a stamp"},
		{name: "no ID", peer: "nas1", header: func(h *SendHeader) { h.ID = "" }, says: "ID"},
		{name: "older epoch", peer: "nas1", epoch: 3, header: func(h *SendHeader) { h.Epoch = 2 }, says: "from epoch 2 of share projects, which is at epoch 3 (active on nas1)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDisk(t)
			trail := &trailLog{}
			rv := &Receiver{Appliance: "nas2", Driver: d, Trail: trail.add, Active: func(string) Activation { return Activation{Epoch: c.epoch} }}
			if c.receiver != "" {
				rv.Appliance = c.receiver
			}
			h := good
			if c.header != nil {
				c.header(&h)
			}
			_, err := rv.Receive(t.Context(), spec, c.peer, h, untouchable{t})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Receive: %v; want ErrRefused saying %q", err, c.says)
			}
			if d.Mutations() != 0 {
				t.Errorf("a refused receive changed %v", d.Log())
			}
			entries := trail.all()
			switch {
			case c.trailless && len(entries) != 0:
				t.Errorf("trail for a share not in the spec: %+v", entries)
			case !c.trailless && (len(entries) != 1 || entries[0].Result != ResultRefused || entries[0].From != c.peer || entries[0].Error != err.Error()):
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
	rv := &Receiver{Appliance: "nas2", Driver: d, Trail: trail.add}
	if !rv.claim("projects") {
		t.Fatal("claim failed")
	}
	h := SendHeader{ID: "a1", Share: "projects", From: "nas1", Snapshot: "20261125T120000Z"}
	_, err := rv.Receive(t.Context(), spec, "nas1", h, untouchable{t})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Receive while another runs: %v, want ErrBusy", err)
	}
	if e := trail.all(); len(e) != 1 || e[0].Result != ResultRefused {
		t.Errorf("trail: %+v", e)
	}
	if err := rv.CleanStaging(t.Context(), spec); err != nil || d.Mutations() != 0 {
		t.Errorf("CleanStaging of a busy share: %v, %v", err, d.Log())
	}
	rv.release("projects")
}

// TestReceiveRejectsWrongStream sends streams that do not match their
// header: the target keeps none of them.
func TestReceiveRejectsWrongStream(t *testing.T) {
	fl := newReplicaFleet(t, 0, "{to: nas2/backup, schedule: every 1h, retention: 1h}")
	ctx := t.Context()
	fl.write("a.bin", 64<<10, 1)
	base := fl.run(ctx, ResultOK)

	for _, c := range []struct {
		name   string
		header func(h *SendHeader)
		says   string
	}{
		{"another name", func(h *SendHeader) { h.Snapshot = "20261125T235959Z" }, "created no 20261125T235959Z"},
		{"another UUID", func(h *SendHeader) { h.UUID = "0d6f1c52-0000-0000-0000-000000000000" }, "but the header says 0d6f1c52"},
		{"unknown parent", func(h *SendHeader) { h.ParentUUID = "0d6f1c52-0000-0000-0000-000000000000" }, "no longer holds the parent"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fl.clock.Advance(time.Hour)
			fl.tr.set(func(tr *pipeTransport) { tr.header = c.header })
			defer fl.tr.set(func(tr *pipeTransport) { tr.header = nil })
			e := fl.run(ctx, ResultFailed)
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
	h := SendHeader{ID: "crafted", Share: "projects", From: "nas1", Snapshot: "20991231T000000Z"}
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
	base := fl.run(ctx, ResultOK)

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
	if e := fl.run(ctx, ResultOK); e.Kind != KindIncremental || e.Parent != base.Snapshot {
		t.Errorf("attempt after CleanStaging: %+v", e)
	}
}

func TestBtrfsSendReceiveRename(t *testing.T) {
	b, pool, rec := realPool(t)
	ctx := t.Context()
	for _, err := range []error{
		b.CreateSubvolume(ctx, pool+"/src"),
		os.WriteFile(pool+"/src/f", []byte("hello"), 0o644),
		b.Snapshot(ctx, pool+"/src", pool+"/src.1", true),
		os.WriteFile(pool+"/src/g", []byte("world"), 0o644),
		b.Snapshot(ctx, pool+"/src", pool+"/src.2", true),
		b.MkdirAll(ctx, pool+"/recv"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	var full, incr bytes.Buffer
	if err := b.Send(ctx, pool+"/src.1", "", &full); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, pool+"/src.2", pool+"/src.1", &incr); err != nil {
		t.Fatal(err)
	}
	fullStream := bytes.Clone(full.Bytes())
	if err := b.Receive(ctx, pool+"/recv", &full); err != nil {
		t.Fatal(err)
	}
	if err := b.Receive(ctx, pool+"/recv", &incr); err != nil {
		t.Fatal(err)
	}
	got := byPath(t, b, pool)
	for _, name := range []string{"src.1", "src.2"} {
		if r := got["recv/"+name]; !r.ReadOnly || r.ReceivedUUID != got[name].UUID {
			t.Errorf("received %s: %+v; want read-only with received UUID %s", name, r, got[name].UUID)
		}
	}
	if data, err := os.ReadFile(pool + "/recv/src.2/g"); err != nil || string(data) != "world" {
		t.Errorf("received file: %q, %v", data, err)
	}

	// A read-only received subvolume can be renamed within its directory.
	if err := b.Rename(ctx, pool+"/recv/src.2", pool+"/recv/final"); err != nil {
		t.Fatal(err)
	}
	if err := b.Rename(ctx, pool+"/recv/src.1", pool+"/recv/final"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("rename onto an existing name: %v, want fs.ErrExist", err)
	}
	want := []string{"receive " + pool + "/recv", "receive " + pool + "/recv", "rename " + pool + "/recv/final"}
	if seen := rec.seen(); !slices.Equal(seen[len(seen)-3:], want) {
		t.Errorf("observed %q, want it to end with %q", seen, want)
	}

	// Failures say what failed and why.
	err := b.Send(ctx, pool+"/missing", "", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "send "+pool+"/missing: btrfs send -q "+pool+"/missing: exit status 1: ERROR:") {
		t.Errorf("send of a missing snapshot: %v", err)
	}
	err = b.Receive(ctx, pool+"/recv", strings.NewReader("not a stream"))
	if err == nil || !strings.Contains(err.Error(), "receive into "+pool+"/recv: btrfs receive") {
		t.Errorf("receive of garbage: %v", err)
	}
	broken := errors.New("connection reset")
	err = b.Send(ctx, pool+"/src.2", "", failingWriter{broken})
	if !errors.Is(err, broken) || !strings.Contains(err.Error(), "write the stream") {
		t.Errorf("send into a failing writer: %v", err)
	}
	err = b.Receive(ctx, pool+"/recv", io.MultiReader(bytes.NewReader(fullStream[:100]), iotest.ErrReader(broken)))
	if !errors.Is(err, broken) {
		t.Errorf("receive from a failing reader: %v; want it to say %v", err, broken)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write(p []byte) (int, error) { return 0, f.err }

func TestFakeDriverRename(t *testing.T) {
	ctx := context.Background()
	d := newDisk(t)
	d.subvol("/tank/a")
	d.ok(d.MkdirAll(ctx, "/tank/a/docs"))
	d.ok(d.MkdirAll(ctx, "/tank/dir"))
	d.ok(d.Snapshot(ctx, "/tank/a", "/tank/dir/s", true))
	a, _ := d.Lookup("/tank/a")

	d.ok(d.Rename(ctx, "/tank/a", "/tank/b"))
	if b, ok := d.Lookup("/tank/b"); !ok || b.UUID != a.UUID || b.Path != "b" {
		t.Errorf("renamed subvolume: %+v", b)
	}
	if _, ok := d.Lookup("/tank/a"); ok {
		t.Error("the old name is still there")
	}
	if err := d.CreateSubvolume(ctx, "/tank/b/docs/x"); err != nil {
		t.Errorf("the renamed subvolume lost its directory: %v", err)
	}
	d.ok(d.Rename(ctx, "/tank/dir/s", "/tank/dir/t")) // a read-only subvolume, in a writable directory
	for _, c := range []struct{ from, to, says string }{
		{"/tank/b", "/tank/dir", "exists"},
		{"/tank/b", "/pool2/b", "different filesystems"},
		{"/tank/nothing", "/tank/c", "does not exist"},
		{"/tank/b", "/tank/b/docs/b", "into itself"},
		{"/tank/dir/t/docs", "/tank/docs", "read-only"},
	} {
		if err := d.Rename(ctx, c.from, c.to); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Rename(%s, %s) = %v; want it to say %q", c.from, c.to, err, c.says)
		}
	}
	if err := d.Send(ctx, "/tank/dir/t", "", io.Discard); !errors.Is(err, errNotModelled) {
		t.Errorf("Send on the fake: %v", err)
	}
	if err := d.Receive(ctx, "/tank/dir", strings.NewReader("")); !errors.Is(err, errNotModelled) {
		t.Errorf("Receive on the fake: %v", err)
	}
}

// sendStream builds a btrfs send stream of commands, each a command number
// and a payload length, ending with the end command when end is set.
func sendStream(end bool, cmds ...[2]int) []byte {
	var b bytes.Buffer
	b.WriteString(sendMagic)
	binary.Write(&b, binary.LittleEndian, uint32(1))
	cmd := func(c, n int) {
		binary.Write(&b, binary.LittleEndian, uint32(n))
		binary.Write(&b, binary.LittleEndian, uint16(c))
		binary.Write(&b, binary.LittleEndian, uint32(0xdeadbeef))
		b.Write(bytes.Repeat([]byte{'x'}, n))
	}
	for _, c := range cmds {
		cmd(c[0], c[1])
	}
	if end {
		cmd(sendCmdEnd, 0)
	}
	return b.Bytes()
}

func TestStreamCheck(t *testing.T) {
	stream := sendStream(true, [2]int{1, 40}, [2]int{15, 70000}, [2]int{20, 3})
	readers := map[string]func([]byte) io.Reader{
		"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"bytewise": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"halves":   func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
	}
	for name, reader := range readers {
		t.Run(name, func(t *testing.T) {
			check := newStreamCheck(reader(stream))
			got, err := io.ReadAll(check)
			if err != nil || !bytes.Equal(got, stream) {
				t.Fatalf("read %d of %d bytes: %v", len(got), len(stream), err)
			}
			if err := check.finish(); err != nil {
				t.Errorf("finish: %v", err)
			}
			if check.count() != int64(len(stream)) {
				t.Errorf("count %d, want %d", check.count(), len(stream))
			}

			// Cut anywhere, the stream is short.
			for _, cut := range []int{0, 5, 17, 20, 27, 67, 1000, len(stream) - 10, len(stream) - 1} {
				check := newStreamCheck(reader(stream[:cut]))
				io.ReadAll(check)
				if err := check.finish(); err == nil {
					t.Errorf("stream cut at %d of %d passed", cut, len(stream))
				}
			}

			// What follows the end command is not passed on, and fails it.
			check = newStreamCheck(reader(append(slices.Clone(stream), sendStream(true)...)))
			got, _ = io.ReadAll(check)
			if !bytes.Equal(got, stream) {
				t.Errorf("passed on %d bytes of a stream with more after its end, want %d", len(got), len(stream))
			}
			if err := check.finish(); err == nil || !strings.Contains(err.Error(), "goes on after btrfs's end command") {
				t.Errorf("finish of a stream with more after its end: %v", err)
			}
		})
	}

	// The sender's failure after the end command fails the receive.
	broken := errors.New("sender died")
	check := newStreamCheck(io.MultiReader(bytes.NewReader(stream), iotest.ErrReader(broken)))
	io.ReadAll(check)
	if err := check.finish(); !errors.Is(err, broken) {
		t.Errorf("finish of a stream that fails after its end: %v", err)
	}

	check = newStreamCheck(strings.NewReader("GIF89a and more bytes to fill"))
	if _, err := io.ReadAll(check); err == nil || !strings.Contains(err.Error(), "not a btrfs send stream") {
		t.Errorf("read of a GIF: %v", err)
	}
	check = newStreamCheck(bytes.NewReader(sendStream(false, [2]int{sendCmdEnd, 4})))
	if _, err := io.ReadAll(check); err == nil || !strings.Contains(err.Error(), "end command with 4 bytes") {
		t.Errorf("read of an end command with a payload: %v", err)
	}

	check = newStreamCheck(bytes.NewReader(stream))
	check.close()
	if _, err := check.Read(make([]byte, 10)); !errors.Is(err, errStreamClosed) {
		t.Errorf("read after close: %v", err)
	}
}
