// Package looppooltest gives tests a loop-mounted btrfs pool that is
// removed when the test ends. It lives apart from looppool so that the
// fleetctl binary, which makes loop pools for its demo, never links the
// testing package.
package looppooltest

import (
	"os"
	"testing"

	"github.com/fleetctl/fleetctl/reconcile/looppool"
)

// ForTest makes a loop pool of size bytes (at least looppool.MinSize;
// looppool.DefaultSize
// when 0) for the test or benchmark t, in a temporary directory, and
// closes it when t and its subtests end, passed or failed. Where loop pools
// cannot be made (see Available) it skips t, or fails it when CI=true, so a
// CI machine never passes without running the real-btrfs tests.
func ForTest(t testing.TB, size int64) *looppool.Pool {
	t.Helper()
	if err := looppool.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real-btrfs test cannot run on CI: %v", err)
		}
		t.Skipf("real-btrfs test skipped: %v", err)
	}
	if size < looppool.MinSize {
		size = looppool.MinSize
	}
	// Cleanups run last-registered first: registered after t.TempDir's, the
	// unmount runs before the directory holding the mount is removed.
	dir := t.TempDir()
	p, err := looppool.Create(t.Context(), dir, "pool", size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("loop pool left behind: %v", err)
		}
	})
	return p
}
