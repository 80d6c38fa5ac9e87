package reconcile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

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

// TestBtrfsEntriesRemoveAll lists and removes plain files beside
// subvolumes: never through a symlink, never inside a subvolume.
func TestBtrfsEntriesRemoveAll(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := t.Context()
	dir := pool + "/d"
	for _, err := range []error{
		b.MkdirAll(ctx, dir+"/plain/deeper"),
		os.WriteFile(dir+"/plain/deeper/f", []byte("x"), 0o644),
		os.WriteFile(pool+"/outside", []byte("keep"), 0o644),
		os.Symlink(pool, dir+"/plain/up"),
		os.Symlink("/", dir+"/root"),
		b.CreateSubvolume(ctx, dir+"/sub"),
		os.WriteFile(dir+"/sub/inside", []byte("keep"), 0o644),
		b.CreateSubvolume(ctx, dir+"/plain/nested"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Entries(ctx, dir)
	want := []string{"plain", "plain/deeper", "plain/deeper/f", "plain/nested", "plain/up", "root", "sub"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Entries: %q, %v; want %q", got, err, want)
	}
	if err := b.RemoveAll(ctx, dir+"/sub"); err == nil || !strings.Contains(err.Error(), "is a subvolume") {
		t.Errorf("RemoveAll of a subvolume: %v", err)
	}
	// A plain directory holding a subvolume: the rest goes, the subvolume
	// stays, and the failure says so.
	if err := b.RemoveAll(ctx, dir+"/plain"); err == nil || !strings.Contains(err.Error(), "plain/nested is a subvolume") {
		t.Errorf("RemoveAll of a directory holding a subvolume: %v", err)
	}
	for _, err := range []error{
		b.RemoveAll(ctx, dir+"/root"),
		b.DeleteSubvolume(ctx, dir+"/plain/nested"),
		b.RemoveAll(ctx, dir+"/plain"),
		b.RemoveAll(ctx, dir+"/missing"),
	} {
		if err != nil {
			t.Error(err)
		}
	}
	if got, err := b.Entries(ctx, dir); err != nil || !slices.Equal(got, []string{"sub"}) {
		t.Errorf("Entries after RemoveAll: %q, %v", got, err)
	}
	for _, f := range []string{pool + "/outside", dir + "/sub/inside"} {
		if data, err := os.ReadFile(f); err != nil || string(data) != "keep" {
			t.Errorf("%s: %q, %v", f, data, err)
		}
	}
}
