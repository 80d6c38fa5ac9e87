package looppool

import (
	"os"
	"testing"
)

// ForTest makes a loop pool of size bytes (at least MinSize; DefaultSize
// when 0) for the test or benchmark t, in a temporary directory, and
// closes it when t and its subtests end, passed or failed. Where loop pools
// cannot be made (see Available) it skips t, or fails it when CI=true, so a
// CI machine never passes without running the real-btrfs tests.
func ForTest(t testing.TB, size int64) *Pool {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real-btrfs test cannot run on CI: %v", err)
		}
		t.Skipf("real-btrfs test skipped: %v", err)
	}
	if size < MinSize {
		size = MinSize
	}
	// Cleanups run last-registered first: registered after t.TempDir's, the
	// unmount runs before the directory holding the mount is removed.
	dir := t.TempDir()
	p, err := Create(t.Context(), dir, "pool", size)
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
