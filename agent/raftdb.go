package agent

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors Start returns for a raft.db it will not open; callers compare
// them with errors.Is.
var (
	// ErrRaftDBDamaged says the data dir's raft.db is not a whole bbolt
	// file: truncated, garbled, or inconsistent.
	ErrRaftDBDamaged = errors.New("the Raft state is damaged")
	// ErrRaftDBEmpty says raft.db is empty in a data dir whose agent
	// has been a member of a fleet: its term, vote and log are gone.
	ErrRaftDBEmpty = errors.New("the Raft state is empty")
)

// raftDBState is what checkRaftDB found.
type raftDBState int

const (
	raftDBMissing raftDBState = iota // no file: nothing to lose
	raftDBEmpty                      // a file of 0 bytes
	raftDBSound                      // a bbolt file that passed every check
)

// checkRaftDB reads the data dir's raft.db, if there is one, and says
// whether raft-boltdb may open it. bbolt trusts its file: a truncated one
// faults in a read of the memory map, a garbled one panics (invalid
// freelist page), both inside Open or later inside Raft, where nothing can
// recover. So the file is read here first, read-only, in this goroutine
// with faults turned into panics and every panic recovered: the meta
// pages, the size they promise, every bucket and key, then bbolt's own
// consistency check (Tx.Check). It costs a read of the file at each start;
// a fleet's raft.db holds the spec and a short log, so that is small.
func (d dataDir) checkRaftDB() (raftDBState, error) {
	path := d.path(fileRaftDB)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return raftDBMissing, nil
	case err != nil:
		return 0, err
	case fi.Size() == 0:
		return raftDBEmpty, nil
	}
	damaged := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrRaftDBDamaged, path, fmt.Sprintf(format, args...))
	}
	// First only the meta pages, which bbolt validates with their
	// checksums, and the size they promise: no page beyond them is read
	// yet, so a truncated file is told as such and never faults.
	err = readBolt(path, false, func(tx *bolt.Tx) error {
		if hwm := tx.Size(); hwm > fi.Size() {
			return damaged("truncated: %d bytes, but its pages reach to byte %d", fi.Size(), hwm)
		}
		return nil
	})
	if err != nil {
		return 0, classify(err, damaged)
	}
	// Then everything: the freelist (loaded in Open, in this goroutine,
	// so that Check's own goroutine finds it loaded), every page a
	// bucket reaches, and bbolt's check that each page is used once.
	err = readBolt(path, true, func(tx *bolt.Tx) error {
		if err := walkBuckets(tx.Cursor(), tx.Bucket); err != nil {
			return damaged("%v", err)
		}
		var problems []error
		for err := range tx.Check() {
			problems = append(problems, err)
		}
		switch len(problems) {
		case 0:
			return nil
		case 1:
			return damaged("%v", problems[0])
		}
		return damaged("%v (and %d more problems)", problems[0], len(problems)-1)
	})
	if err != nil {
		return 0, classify(err, damaged)
	}
	return raftDBSound, nil
}

// errBoltPanicked marks a fault or panic of bbolt's that readBolt
// recovered: the file is not what bbolt takes it for.
var errBoltPanicked = errors.New("bbolt cannot read it")

// classify says whether readBolt's err is about the file's content
// (damaged) or about reaching it (permission, a lock held elsewhere), which
// restoring the data dir would not cure.
func classify(err error, damaged func(string, ...any) error) error {
	switch {
	case errors.Is(err, ErrRaftDBDamaged):
		return err
	case errors.Is(err, errBoltPanicked), errors.Is(err, berrors.ErrInvalid),
		errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return damaged("%v", err)
	}
	return err
}

// readBolt opens the bbolt file at path read-only and runs f in a read
// transaction, turning a fault or a panic of bbolt's into an error.
// preload loads the freelist in Open.
func readBolt(path string, preload bool, f func(*bolt.Tx) error) (err error) {
	// A panic inside Open leaves no DB to close: its file is closed here.
	var file *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errBoltPanicked, r)
			if file != nil {
				file.Close()
			}
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: preload, Timeout: 5 * time.Second, OpenFile: openFile})
	if err != nil {
		return err
	}
	// A panic inside View has rolled its transaction back: Close does not
	// wait for it.
	defer db.Close()
	return db.View(f)
}

// walkBuckets reads every key of a bucket (the root when bucket is the
// transaction's) and of every bucket nested in it, so that every page
// they are on is read.
func walkBuckets(c *bolt.Cursor, bucket func([]byte) *bolt.Bucket) error {
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		b := bucket(k)
		if b == nil {
			return fmt.Errorf("bucket %q cannot be opened", k)
		}
		if err := walkBuckets(b.Cursor(), b.Bucket); err != nil {
			return err
		}
	}
	return nil
}
