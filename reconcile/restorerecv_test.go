package reconcile

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReceiveAs on real btrfs: a full stream becomes a writable new
// subvolume with the copy's files; a cut stream and a stream of another
// subvolume than named are refused; and nothing of any receive is left
// below RestoreInDir.
func TestReceiveAs(t *testing.T) {
	b, pool, _ := realPool(t)
	ctx := context.Background()
	if err := b.CreateSubvolume(ctx, pool+"/src"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pool+"/src/data", bytes.Repeat([]byte("fleetctl "), 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.Snapshot(ctx, pool+"/src", pool+"/src.1", true); err != nil {
		t.Fatal(err)
	}
	uuid, err := SendUUID(ctx, b, pool, pool+"/src.1")
	if err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	if err := b.Send(ctx, pool+"/src.1", "", &stream); err != nil {
		t.Fatal(err)
	}
	leftovers := func(what string) {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(pool, RestoreInDir))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(ents) > 0 {
			t.Errorf("%s: %s holds %v", what, RestoreInDir, ents)
		}
	}

	n, err := ReceiveAs(ctx, b, pool, pool+"/new", uuid, bytes.NewReader(stream.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(stream.Len()) {
		t.Errorf("bytes = %d, want %d", n, stream.Len())
	}
	got := byPath(t, b, pool)
	if sv, ok := got["new"]; !ok || sv.ReadOnly {
		t.Errorf("new = %+v, %v; want a writable subvolume", sv, ok)
	}
	if data, err := os.ReadFile(pool + "/new/data"); err != nil || !bytes.Equal(data, bytes.Repeat([]byte("fleetctl "), 100000)) {
		t.Errorf("new/data: %d bytes, %v", len(data), err)
	}
	leftovers("after a receive")

	if _, err := ReceiveAs(ctx, b, pool, pool+"/cut", uuid, bytes.NewReader(stream.Bytes()[:stream.Len()/2])); err == nil {
		t.Error("a cut stream was received")
	}
	if _, err := ReceiveAs(ctx, b, pool, pool+"/other", "00000000-0000-0000-0000-000000000000", bytes.NewReader(stream.Bytes())); err == nil || !strings.Contains(err.Error(), "received UUID") {
		t.Errorf("a stream of another copy than named: err = %v", err)
	}
	got = byPath(t, b, pool)
	for _, p := range []string{"cut", "other"} {
		if _, ok := got[p]; ok {
			t.Errorf("%s made although its receive failed", p)
		}
	}
	leftovers("after failed receives")
}
