package reconcile

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// A restore as a new share on another appliance than the one holding the
// copy (fleetctl restore --as NEW --on B) sends the copy in full, with
// btrfs send over the replication transport, and B makes the new share of
// what it received with ReceiveAs.

// CheckPoolMounted checks that pool is a mounted btrfs filesystem.
func CheckPoolMounted(ctx context.Context, d Driver, pool string) error {
	ok, err := d.IsBtrfs(ctx, pool)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not a mounted btrfs filesystem", pool)
	}
	return nil
}

// SendUUID is the UUID by which btrfs send names the subvolume at path in
// a stream (its received UUID when it has one, else its UUID): what the
// receiving side's copy must carry as its received UUID.
func SendUUID(ctx context.Context, d Driver, pool, path string) (string, error) {
	subs, err := d.Subvolumes(ctx, pool)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(pool, path)
	if err != nil {
		return "", err
	}
	for _, sv := range subs {
		if sv.Path == filepath.ToSlash(rel) {
			if !sv.ReadOnly {
				return "", fmt.Errorf("%s is not read-only: btrfs send sends only read-only snapshots", path)
			}
			return sendUUID(sv), nil
		}
	}
	return "", fmt.Errorf("no subvolume %s in pool %s", path, pool)
}

// ReceiveAs receives body, a full btrfs send stream of one subvolume whose
// send UUID is uuid, and makes dst (checked with CheckRestoreAs) a
// writable snapshot of it. The stream lands in a new directory of its own
// below RestoreInDir in pool, so that everything there is this receive's;
// it must end with btrfs's end command and create exactly one subvolume,
// read-only with uuid as its received UUID. Whatever the receive created
// is deleted when it returns, in success too (dst is a snapshot of it, so
// nothing is lost): a partial receive never looks complete, and never
// lingers. It returns the stream's bytes.
func ReceiveAs(ctx context.Context, d Driver, pool, dst, uuid string, body io.Reader) (int64, error) {
	if uuid == "" {
		return 0, errors.New("the sender named no UUID for the copy")
	}
	dir := filepath.Join(pool, RestoreInDir, filepath.Base(dst)+"."+strings.ToLower(rand.Text()[:10]))
	if err := d.MkdirAll(ctx, dir); err != nil {
		return 0, err
	}
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()

	check := newStreamCheck(body)
	err := d.Receive(ctx, dir, check)
	if err == nil {
		err = check.finish()
	}
	check.close()
	n := check.count()
	var got *Subvolume
	if err == nil {
		got, err = receivedIn(ctx, d, pool, dir, uuid)
	}
	if err == nil {
		err = d.Snapshot(ctx, filepath.Join(pool, got.Path), dst, false)
	}
	if cerr := removeReceived(cleanup, d, pool, dir); cerr != nil {
		if err == nil {
			return n, fmt.Errorf("made %s, but deleting what was received at %s failed: %w", dst, dir, cerr)
		}
		return n, fmt.Errorf("%w; and deleting what was received at %s failed: %w", err, dir, cerr)
	}
	return n, err
}

// receivedIn checks that the receive into dir made one subvolume, complete
// (read-only, received UUID uuid), and returns it.
func receivedIn(ctx context.Context, d Driver, pool, dir, uuid string) (*Subvolume, error) {
	subs, err := d.Subvolumes(ctx, pool)
	if err != nil {
		return nil, err
	}
	var got []Subvolume
	for _, sv := range subs {
		if within(dir, filepath.Join(pool, sv.Path)) {
			got = append(got, sv)
		}
	}
	switch {
	case len(got) != 1:
		return nil, fmt.Errorf("the stream made %d subvolumes, not one", len(got))
	case filepath.Dir(filepath.Join(pool, got[0].Path)) != dir:
		return nil, fmt.Errorf("the stream made %s, not a subvolume right in %s", got[0].Path, dir)
	case !got[0].ReadOnly || got[0].ReceivedUUID == "":
		return nil, fmt.Errorf("btrfs receive left %s writable or without a received UUID: an incomplete receive", got[0].Path)
	case got[0].ReceivedUUID != uuid:
		return nil, fmt.Errorf("received %s has received UUID %s, but the copy sent has %s", got[0].Path, got[0].ReceivedUUID, uuid)
	}
	return &got[0], nil
}

// removeReceived deletes every subvolume below dir (deepest first), then
// dir and whatever else is in it.
func removeReceived(ctx context.Context, d Driver, pool, dir string) error {
	subs, err := d.Subvolumes(ctx, pool)
	if err != nil {
		return err
	}
	var paths []string
	for _, sv := range subs {
		if p := filepath.Join(pool, sv.Path); within(dir, p) && p != dir {
			paths = append(paths, p)
		}
	}
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range paths {
		if err := d.DeleteSubvolume(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, d.RemoveAll(ctx, dir))
	}
	return errors.Join(errs...)
}
