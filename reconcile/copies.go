package reconcile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// CopyKind says which of fleetctl's copies of a share a subvolume is.
type CopyKind string

// The kinds of copies of a share a pool can hold (see the layout above).
const (
	// CopyScheduled: <pool>/.fleetctl/snapshots/<share>/<share>.<stamp>.
	CopyScheduled CopyKind = "scheduled"
	// CopyFinal: <pool>/.fleetctl/snapshots/<share>/<share>.final.<stamp>,
	// taken right before the share was deleted.
	CopyFinal CopyKind = "final"
	// CopyReplication: <pool>/.fleetctl/replication/<share>/<stamp>, on
	// the sending appliance.
	CopyReplication CopyKind = "replication"
	// CopyReceived: <pool>/.fleetctl/received/<share>/<share>.<stamp>, a
	// completed receive on the target (a staging name is not a copy).
	CopyReceived CopyKind = "received"
	// CopyDiverged: <pool>/.fleetctl/diverged/<share>.<stamp>, a demoted
	// share's writes after its last replication snapshot.
	CopyDiverged CopyKind = "diverged"
	// CopyBeforeEpoch: <pool>/<share>.before-epoch-<N>, the copy a share
	// had on its appliance before a failback at epoch N set it aside.
	CopyBeforeEpoch CopyKind = "before-epoch"
	// CopyBeforeRestore: <pool>/.fleetctl/snapshots/<share>/
	// <share>.before-restore.<stamp>, the share as it was right before an
	// in-place restore replaced it (never pruned).
	CopyBeforeRestore CopyKind = "before-restore"
)

// beforeEpochInfix sets a set-aside copy's name apart:
// <share>.before-epoch-<N>.
const beforeEpochInfix = ".before-epoch-"

// BeforeEpochPath is where a failback at epoch sets aside the copy a
// share had on its returning appliance: <pool>/<share>.before-epoch-<N>.
func BeforeEpochPath(pool, share string, epoch uint64) string {
	return filepath.Join(pool, share+beforeEpochInfix+strconv.FormatUint(epoch, 10))
}

// CopyName is what a subvolume's path in a pool says about it as a copy
// of a share.
type CopyName struct {
	Kind  CopyKind `json:"kind"`
	Share string   `json:"share"`
	// Stamp is the time in the name (UTC); zero for a before-epoch copy,
	// whose name has none.
	Stamp time.Time `json:"stamp,omitzero"`
	// Epoch is the epoch of a before-epoch copy's name.
	Epoch uint64 `json:"epoch,omitempty"`
}

// ClassifyCopy says which copy of which share the subvolume at rel (a
// path relative to its pool, with slashes) is by fleetctl's layout, or
// false when it is none: a share itself, a staging name of a receive,
// anything else. It reads nothing but the path.
func ClassifyCopy(rel string) (CopyName, bool) {
	if rest, ok := strings.CutPrefix(rel, MetaDir+"/"); ok {
		return classifyMeta(rest)
	}
	if strings.Contains(rel, "/") {
		return CopyName{}, false
	}
	i := strings.LastIndex(rel, beforeEpochInfix)
	if i <= 0 {
		return CopyName{}, false
	}
	n := rel[i+len(beforeEpochInfix):]
	epoch, err := strconv.ParseUint(n, 10, 64)
	if err != nil || strconv.FormatUint(epoch, 10) != n {
		return CopyName{}, false
	}
	return CopyName{Kind: CopyBeforeEpoch, Share: rel[:i], Epoch: epoch}, true
}

// classifyMeta classifies a path below MetaDir, given relative to it.
func classifyMeta(rest string) (CopyName, bool) {
	parts := strings.Split(rest, "/")
	if slices.Contains(parts, "") {
		return CopyName{}, false
	}
	switch {
	case len(parts) == 2 && parts[0] == filepath.Base(DivergedDir):
		if share, ok := divergedShare(parts[1]); ok {
			t, _ := parseSnapshotName(share, parts[1])
			return CopyName{Kind: CopyDiverged, Share: share, Stamp: t}, true
		}
	case len(parts) != 3:
	case parts[0] == filepath.Base(SnapshotDir):
		share, name := parts[1], parts[2]
		if t, ok := parseFinalName(share, name); ok {
			return CopyName{Kind: CopyFinal, Share: share, Stamp: t}, true
		}
		if t, ok := parseBeforeRestoreName(share, name); ok {
			return CopyName{Kind: CopyBeforeRestore, Share: share, Stamp: t}, true
		}
		if t, ok := parseSnapshotName(share, name); ok {
			return CopyName{Kind: CopyScheduled, Share: share, Stamp: t}, true
		}
	case parts[0] == filepath.Base(ReplicationDir):
		if t, ok := parseStamp(parts[2]); ok {
			return CopyName{Kind: CopyReplication, Share: parts[1], Stamp: t}, true
		}
	case parts[0] == filepath.Base(ReceivedDir):
		if t, ok := parseSnapshotName(parts[1], parts[2]); ok {
			return CopyName{Kind: CopyReceived, Share: parts[1], Stamp: t}, true
		}
	}
	return CopyName{}, false
}

// Copy is one copy of a share on a pool, as ListCopies finds it.
type Copy struct {
	CopyName
	// Pool is the pool's name in the spec; Path the copy's absolute path.
	Pool string `json:"pool"`
	Path string `json:"path"`
	// Time is when the copy was taken: the stamp in its name, or, for a
	// before-epoch copy, the subvolume's creation time (zero when it
	// could not be read).
	Time     time.Time `json:"time,omitzero"`
	ReadOnly bool      `json:"read_only"`
	// Referenced and Exclusive are its qgroup's bytes; nil when the pool
	// has no quotas (or the subvolume no qgroup).
	Referenced *uint64 `json:"referenced,omitempty"`
	Exclusive  *uint64 `json:"exclusive,omitempty"`
}

// ListCopies lists the copies of shares on the pool, of share only when
// it is not empty, in no particular order. It fails when the pool cannot
// be observed (not a mounted btrfs filesystem, btrfs failing). A
// before-epoch copy whose creation time cannot be read is listed without
// a time, the error joined to the one returned with the list.
func ListCopies(ctx context.Context, d Driver, pool schema.Pool, share string) ([]Copy, error) {
	po := observePool(ctx, d, pool)
	if po.Err != "" {
		return nil, fmt.Errorf("pool %s: %s", pool.Name, po.Err)
	}
	var (
		out  []Copy
		errs []error
	)
	for _, sv := range po.Subvolumes {
		name, ok := ClassifyCopy(sv.Path)
		if !ok || (share != "" && name.Share != share) {
			continue
		}
		c := Copy{CopyName: name, Pool: pool.Name, Path: filepath.Join(pool.Path, sv.Path), Time: name.Stamp, ReadOnly: sv.ReadOnly}
		if q, ok := po.Qgroups[sv.ID]; ok && po.QuotaEnabled {
			c.Referenced, c.Exclusive = &q.Referenced, &q.Exclusive
		}
		if c.Time.IsZero() {
			t, err := d.Created(ctx, c.Path)
			if err != nil {
				errs = append(errs, err)
			}
			c.Time = t.UTC()
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}
