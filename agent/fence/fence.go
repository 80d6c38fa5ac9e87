// Package fence keeps a storage appliance's replicated shares read-only
// when its agent cannot vouch for them, from outside the agent's own
// goroutines.
//
// The agent fences a share itself when its lease with the leader lapses
// (agent/lease.go). That needs the agent to be alive and scheduled: a
// SIGKILLed, crashed or stopped (SIGSTOP) agent fences nothing, while the
// quorum fails its shares over after failover_after. This package holds
// what covers those cases:
//
//   - the records an agent keeps in its data dir: the shares it is active
//     for (FileActive) and the shares it has fenced (FileFenced), so that
//     whoever starts or stops the agent can fence the right subvolumes
//     without the Raft state;
//   - the guard, a small separate process the agent starts, which reads a
//     heartbeat from the agent over a pipe and fences the agent's active
//     shares when the agent exits or falls silent past its lease;
//   - FenceAll, which `fleetctl fence` runs for an operator or a unit
//     file's ExecStopPost.
//
// The decision (when the guard must fence) is the pure function Due; the
// effects (btrfs, signals, files) are at the edges.
package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The files in an agent's data dir that this package reads and writes.
const (
	// FileFenced holds the shares the agent made read-only because it
	// could not vouch for them; a restarted agent keeps them read-only
	// until its lease is renewed and the share's epoch has not moved.
	FileFenced = "fenced.json"
	// FileActive holds the replicated shares the agent was last active
	// for, so that a restarted agent, the guard and `fleetctl fence` know
	// which subvolumes to fence without the Raft state.
	FileActive = "active.json"
)

// Record is one replicated share's copy on this appliance: its subvolume
// and the share's failover epoch when it was recorded.
type Record struct {
	Path  string `json:"path"`
	Epoch uint64 `json:"epoch"`
}

// Records are records by share name.
type Records map[string]Record

// ReadRecords reads a records file of the data dir dir; a missing file is
// no records.
func ReadRecords(dir, file string) (Records, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return Records{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, file), err)
	}
	out := Records{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, file), err)
	}
	return out, nil
}

// WriteRecords replaces a records file of the data dir dir atomically;
// no records removes it.
func WriteRecords(dir, file string, r Records) error {
	path := filepath.Join(dir, file)
	if len(r) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

// ReadOnlySetter makes a subvolume read-only; reconcile.Btrfs is one.
type ReadOnlySetter interface {
	SetReadOnly(ctx context.Context, path string, readOnly bool) error
}

// FenceAll makes every recorded subvolume read-only and adds it to the
// data dir's FileFenced, so the agent, when it starts, keeps it read-only
// until its lease is renewed. A subvolume that no longer exists is
// skipped. It returns the shares it fenced, sorted, and every failure.
func FenceAll(ctx context.Context, d ReadOnlySetter, dir string, recs Records) ([]string, error) {
	var done []string
	var errs []error
	fenced := Records{}
	for _, share := range slices.Sorted(maps.Keys(recs)) {
		r := recs[share]
		if gone, err := MakeReadOnly(ctx, d, r.Path); gone {
			continue
		} else if err != nil {
			errs = append(errs, fmt.Errorf("fence share %s: %w", share, err))
			continue
		}
		fenced[share] = r
		done = append(done, share)
	}
	if err := AddFenced(dir, fenced); err != nil {
		errs = append(errs, err)
	}
	return done, errors.Join(errs...)
}

// AddFenced adds recs to the data dir's FileFenced, keeping what it holds.
// An unreadable file is replaced: the new fences still count.
func AddFenced(dir string, recs Records) error {
	if len(recs) == 0 {
		return nil
	}
	var errs []error
	old, err := ReadRecords(dir, FileFenced)
	if err != nil {
		old = Records{}
		errs = append(errs, err)
	}
	maps.Copy(old, recs)
	if err := WriteRecords(dir, FileFenced, old); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes data beside path and renames it into place, so a
// crash never leaves a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// FilePID is the agent's lock file in its data dir: it holds the agent's
// process ID and is locked (flock) while the agent runs, so that two
// agents never share a data dir and `fleetctl fence` can tell whether the
// agent is running.
const FilePID = "agent.pid"

// Lock is a held data-dir lock (FilePID).
type Lock struct{ f *os.File }

// File is the locked file; a child process that inherits it (the guard)
// holds the lock until it exits too.
func (l *Lock) File() *os.File { return l.f }

// Release releases the lock (for this process; a child holding the file
// keeps it held).
func (l *Lock) Release() { l.f.Close() }

// LockAgent takes the data dir's agent lock for this process and writes
// its process ID into FilePID. The lock is released when Release is
// called or the process ends, however it ends, and by every process that
// inherited the file. While another holds it, LockAgent waits up to wait
// (the guard of an agent that just died may still be fencing) and then
// fails, naming the holder.
func LockAgent(dir string, wait time.Duration) (*Lock, error) {
	path := filepath.Join(dir, FilePID)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the data dir: %w", err)
	}
	for deadline := time.Now().Add(wait); ; {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _ := readPID(path)
			return nil, fmt.Errorf("another agent (pid %d) or its guard is running on the data dir %s", pid, dir)
		}
		return nil, fmt.Errorf("lock the data dir: %w", err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// RunningAgent returns the process ID of the agent running on the data dir
// dir, or 0 when none holds its lock.
func RunningAgent(dir string) (int, error) {
	path := filepath.Join(dir, FilePID)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("check for a running agent: %w", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		return 0, nil // nobody holds it; closing f releases ours
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, fmt.Errorf("check for a running agent: %w", err)
	}
	pid, err := readPID(path)
	if err != nil || pid == 0 {
		return -1, nil // running, number unknown
	}
	return pid, nil
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// MakeReadOnly makes the subvolume at path read-only. A path that does not
// exist is no error (there is nothing writable to fence): gone says so.
func MakeReadOnly(ctx context.Context, d ReadOnlySetter, path string) (gone bool, err error) {
	err = d.SetReadOnly(ctx, path, true)
	if err == nil {
		return false, nil
	}
	if _, serr := os.Lstat(path); errors.Is(serr, os.ErrNotExist) {
		return true, nil
	}
	return false, err
}
