package agent

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fleetctl/fleetctl/client"
)

// stoppedMember bootstraps a one-node fleet, applies a spec, stops the node
// and returns its configuration and the path of its raft.db: a data dir
// with identity, credentials and Raft state, ready to be damaged.
func stoppedMember(t *testing.T) (Config, string) {
	t.Helper()
	cfg := bootstrapConfig(t, "n1")
	n := startNode(t, cfg)
	readyLeader(t, []*Node{n})
	if _, err := clientFor(t, n).Apply(t.Context(), client.ApplyRequest{YAML: specOne}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitSpec(t, []*Node{n}, 1, specOne)
	stop(t, n)
	return cfg, filepath.Join(cfg.DataDir, fileRaftDB)
}

// wantStartRefused starts a node on cfg and fails the test unless Start
// returns an error that wraps want and says every one of says.
func wantStartRefused(t *testing.T, cfg Config, want error, says ...string) {
	t.Helper()
	n, err := tryStart(t, t.Context(), cfg)
	if err == nil {
		t.Fatalf("start %s: want an error (%v), got a running node", n.Name(), want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("start: want an error wrapping %q, got %v", want, err)
	}
	t.Logf("start refused, as it should be: %v", err)
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("start: want an error that says %q, got %v", s, err)
		}
	}
}

func TestNodeRefusesTruncatedRaftDB(t *testing.T) {
	t.Parallel()
	cfg, db := stoppedMember(t)
	if err := os.Truncate(db, boltUsed(t, db)/2); err != nil {
		t.Fatal(err)
	}
	wantStartRefused(t, cfg, ErrRaftDBDamaged, db, "truncated", "restore the data dir", "fleetctl members remove n1")
}

func TestNodeRefusesGarbledRaftDB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		from func(size int) int // garble from this offset to the end
	}{
		// bbolt keeps two meta pages first: with both, it knows nothing.
		{"everything", func(int) int { return 0 }},
		// Valid meta pages over garbage: the freelist and the log pages.
		{"past the meta pages", func(int) int { return 2 * os.Getpagesize() }},
		// Whatever the second half of its pages holds.
		{"the second half", func(used int) int { return used / 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, db := stoppedMember(t)
			b, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			rnd := rand.New(rand.NewPCG(1, 2)) // the same garbage every run
			for i := tc.from(int(boltUsed(t, db))); i < len(b); i++ {
				b[i] = byte(rnd.Uint32())
			}
			if err := os.WriteFile(db, b, 0o600); err != nil {
				t.Fatal(err)
			}
			wantStartRefused(t, cfg, ErrRaftDBDamaged, db, "restore the data dir")
		})
	}
}

func TestNodeRefusesEmptyRaftDB(t *testing.T) {
	t.Parallel()
	cfg, db := stoppedMember(t)
	if err := os.Truncate(db, 0); err != nil {
		t.Fatal(err)
	}
	// The unit file still says --bootstrap: it must neither start a new
	// fleet nor start with the term and vote forgotten.
	wantStartRefused(t, cfg, ErrRaftDBEmpty, db, "--accept-empty-raft-db")
	if fi, err := os.Stat(db); err != nil || fi.Size() != 0 {
		t.Fatalf("after a refused start: want %s left empty, got %v, %v", db, fi, err)
	}

	// Told so, it starts as the member it was, and does not bootstrap a
	// second fleet: it has no leader until the others replicate to it.
	cfg.AcceptEmptyRaftDB = true
	n := startNode(t, cfg)
	if servers := configOf(n); len(servers) != 0 {
		t.Fatalf("started on an accepted empty raft.db with --bootstrap: want no Raft configuration (no new fleet), got %s", describeConfig(servers))
	}
}

func TestNodeStartsOnEmptyRaftDBOfNewDataDir(t *testing.T) {
	t.Parallel()
	// No identity yet: an empty raft.db holds nothing to lose.
	cfg := bootstrapConfig(t, "n1")
	if err := os.WriteFile(filepath.Join(cfg.DataDir, fileRaftDB), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, cfg)
	readyLeader(t, []*Node{n})
}

func TestNodeSecretsAndDataDirArePrivate(t *testing.T) {
	t.Parallel()
	// A data dir made beforehand by hand, world-readable, with files of
	// the names the agent writes its secrets to.
	cfg := bootstrapConfig(t, "n1")
	if err := os.Chmod(cfg.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secrets := []string{fileCAKey, fileKey, fileToken, fileCACert, fileCert, fileIdentity}
	for _, name := range secrets {
		if err := os.WriteFile(filepath.Join(cfg.DataDir, name), []byte("left over\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// With identity.json left over, the agent would take the dir as its
	// own: only the credential files stay.
	if err := os.Remove(filepath.Join(cfg.DataDir, fileIdentity)); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	startNode(t, cfg)

	if fi, err := os.Stat(cfg.DataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: want mode 0700, got %v, %v", fi.Mode(), err)
	}
	if !strings.Contains(logs.String(), "0755") {
		t.Fatalf("the agent changed the data dir's mode from 0755 without a word; its log:\n%s", logs.String())
	}
	for _, name := range secrets {
		fi, err := os.Stat(filepath.Join(cfg.DataDir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: want mode 0600, got %v, %v", name, fi.Mode(), err)
		}
	}
}

// lockedBuffer is a log a node writes to from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// boltUsed is how many bytes of the bbolt file at path its pages reach,
// by the higher high-water mark of its two meta pages (page size at byte
// 24 of a page, high-water page id at byte 56). bbolt grows its file ahead
// of its pages: damage past this mark loses nothing.
func boltUsed(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	for _, off := range []int{0, 4096} {
		if len(b) < off+64 {
			t.Fatalf("%s: %d bytes, too short for bbolt's meta pages", path, len(b))
		}
		used = max(used, int64(binary.LittleEndian.Uint32(b[off+24:]))*int64(binary.LittleEndian.Uint64(b[off+56:])))
	}
	return used
}
