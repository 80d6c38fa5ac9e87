package looppooltest

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/fleetctl/fleetctl/reconcile/looppool"
)

// TestForTestCleansUp: the pool a test made is gone when the test ends:
// no mount, no image, no mount directory.
func TestForTestCleansUp(t *testing.T) {
	var p *looppool.Pool
	t.Run("user", func(t *testing.T) {
		p = ForTest(t, 0)
		if m, err := looppool.Mounted(p.Path()); err != nil || !m {
			t.Fatalf("%s: want it mounted, got %v, %v", p.Path(), m, err)
		}
	})
	if p == nil {
		t.Skip("the subtest made no pool")
	}
	if m, err := looppool.Mounted(p.Path()); err != nil || m {
		t.Errorf("%s: want it unmounted, got %v, %v", p.Path(), m, err)
	}
	for _, path := range []string{p.Image(), p.Path()} {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: want it removed, stat says %v", path, err)
		}
	}
}
