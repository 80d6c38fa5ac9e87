// Package reconcile makes one appliance's btrfs state match the fleet spec
// and says what it did. The planner (Plan) is the only place that decides
// what to change and is pure; the executor runs a plan through a Driver; the
// btrfs driver (Btrfs) is the one piece of code that speaks to btrfs: it
// changes it through btrfs-progs as Rockstor and btrbk do, and reads a
// pool's subvolumes and qgroups with the ioctls btrfs-progs uses for that.
// Replicator and Receiver replicate shares between appliances with btrfs
// send and receive (see DESIGN.md); Receiver.Drill runs disaster-recovery
// drills on a share's replica.
package reconcile

import (
	"context"
	"io"
	"time"
)

// On-disk layout inside a pool (the mount path of a btrfs filesystem):
//
//	<pool>/<share>                                      the share, a subvolume
//	<pool>/.fleetctl/snapshots/<share>/<share>.<stamp>  its read-only snapshots
//	<pool>/.fleetctl/snapshots/<share>/<share>.final.<stamp>  taken right before it was deleted, never pruned
//	<pool>/.fleetctl/replication/<share>/<stamp>        replication snapshots (source)
//	<pool>/.fleetctl/received/<share>/<share>.<stamp>   received snapshots (target)
//	<pool>/.fleetctl/diverged/<share>.<stamp>           a demoted share's unreplicated writes
//	<pool>/<share>.before-epoch-<N>                     the copy a failback at epoch N set aside
//	<pool>/.fleetctl/drill/<share>.<stamp>              a drill's writable clone of a received snapshot, removed after the drill
//
// <stamp> is the snapshot's UTC time, 20060102T150405Z. Everything fleetctl
// keeps for itself lives under .fleetctl, which is never a share.
//
// A replication snapshot is named by its stamp alone because btrfs receive
// names the subvolume it creates after the sent one: a receive lands in
// received/<share>/<stamp>, the staging name, and only a verified receive
// is renamed to <share>.<stamp>, the final name. btrfs allows that rename of
// a read-only received subvolume within its directory (not to another
// one). Anything else in a received directory is an incomplete receive.
//
// After a failover the share lives at <pool>/<share> on the pool of its
// active appliance, which may be the replica's pool (see Activation).
const (
	// MetaDir is the directory in each pool where fleetctl keeps its own
	// subvolumes.
	MetaDir = ".fleetctl"
	// SnapshotDir is where snapshots live, relative to the pool.
	SnapshotDir = MetaDir + "/snapshots"
	// ReplicationDir is where a replication source keeps the read-only
	// snapshots it sends, one directory per share, relative to the pool.
	ReplicationDir = MetaDir + "/replication"
	// ReceivedDir is where a replication target receives, one directory
	// per share, relative to the pool.
	ReceivedDir = MetaDir + "/received"
	// DivergedDir is where a demoted share's writes after its last
	// replication snapshot are kept, read-only and never deleted,
	// relative to the pool.
	DivergedDir = MetaDir + "/diverged"
	// RestoreInDir is where a restore onto this appliance (restore --as
	// --on) receives a copy sent from another, one new directory per
	// receive, deleted when it ends; relative to the pool.
	RestoreInDir = MetaDir + "/restore-in"
	// StampFormat is the time format of snapshot names (UTC).
	StampFormat = "20060102T150405Z"
)

// Subvolume is one btrfs subvolume of a pool as the driver observes it.
type Subvolume struct {
	// ID is the subvolume's btrfs ID (its qgroup is 0/ID).
	ID uint64 `json:"id"`
	// Path is relative to the pool's mount path, like "projects" or
	// ".fleetctl/snapshots/projects/projects.20261125T084600Z".
	Path string `json:"path"`
	// UUID, ParentUUID and ReceivedUUID are btrfs's; empty when btrfs shows "-".
	UUID         string `json:"uuid"`
	ParentUUID   string `json:"parent_uuid,omitempty"`
	ReceivedUUID string `json:"received_uuid,omitempty"`
	// ReadOnly is the subvolume's ro property.
	ReadOnly bool `json:"read_only"`
	// Generation is the btrfs transaction generation of its last change.
	// Taking a snapshot of a subvolume counts as a change of it, in the
	// snapshot's transaction.
	Generation uint64 `json:"generation"`
	// CreationGeneration is the transaction generation the subvolume was
	// created in (btrfs's cgen, otransid); 0 when unknown. A subvolume
	// whose Generation is at most a snapshot's CreationGeneration has not
	// changed since that snapshot was taken.
	CreationGeneration uint64 `json:"creation_generation,omitempty"`
}

// Qgroup is the usage and limit of one subvolume's level-0 qgroup.
type Qgroup struct {
	// Referenced and Exclusive are bytes, as btrfs qgroup show --raw reports.
	Referenced uint64 `json:"referenced"`
	Exclusive  uint64 `json:"exclusive"`
	// MaxReferenced is the limit on referenced bytes; 0 means none.
	MaxReferenced uint64 `json:"max_referenced"`
}

// Driver is what the reconciler needs of btrfs. Paths are absolute. Btrfs
// implements it with btrfs-progs; tests of the planner use a fake.
//
// Implementations must wrap every error with the operation and the path, and
// for a failed command with the command line and its stderr.
type Driver interface {
	// IsBtrfs reports whether path is the mount point of a btrfs
	// filesystem. A directory that merely lies on btrfs is not: a pool
	// that failed to mount must not receive shares on the parent
	// filesystem.
	IsBtrfs(ctx context.Context, path string) (bool, error)
	// Subvolumes lists every subvolume below the pool mounted at pool,
	// with paths relative to pool.
	Subvolumes(ctx context.Context, pool string) ([]Subvolume, error)
	// Created returns when the subvolume at path was created (btrfs's
	// otime), in UTC.
	Created(ctx context.Context, path string) (time.Time, error)
	// CreateSubvolume makes a new empty subvolume at path; its parent
	// directory must exist.
	CreateSubvolume(ctx context.Context, path string) error
	// DeleteSubvolume deletes the subvolume at path. It fails, deleting
	// nothing, when path is not a subvolume or holds nested subvolumes.
	DeleteSubvolume(ctx context.Context, path string) error
	// Snapshot makes a snapshot of the subvolume src at dst, read-only when
	// readOnly is set.
	Snapshot(ctx context.Context, src, dst string, readOnly bool) error
	// SetReadOnly sets or clears the read-only property of a subvolume.
	SetReadOnly(ctx context.Context, path string, readOnly bool) error
	// QuotaEnabled reports whether quotas are enabled on the pool.
	QuotaEnabled(ctx context.Context, pool string) (bool, error)
	// EnableQuota enables quotas on the pool (and waits for the rescan).
	EnableQuota(ctx context.Context, pool string) error
	// Qgroups returns the level-0 qgroups of the pool by subvolume ID.
	Qgroups(ctx context.Context, pool string) (map[uint64]Qgroup, error)
	// SetQuota limits the referenced bytes of the subvolume at path; 0
	// removes the limit.
	SetQuota(ctx context.Context, path string, bytes uint64) error
	// MkdirAll makes a directory and its parents (for MetaDir), mode 0700.
	MkdirAll(ctx context.Context, path string) error
	// Rename renames a file or subvolume within its filesystem; it fails,
	// changing nothing, when to exists.
	Rename(ctx context.Context, from, to string) error
	// Entries lists what is below the directory dir, relative to it and
	// sorted: every file, directory and symlink (not followed), and every
	// subvolume, but nothing inside a subvolume.
	Entries(ctx context.Context, dir string) ([]string, error)
	// RemoveAll removes the file, symlink or plain directory at path and
	// everything below it, following no symlink. It removes nothing inside
	// a subvolume: it fails when path is one or holds one, having removed
	// the rest. A path that does not exist is not an error.
	RemoveAll(ctx context.Context, path string) error
	// Send writes the btrfs send stream of the read-only snapshot to w as
	// btrfs makes it, never holding the whole stream: incremental from
	// the read-only snapshot parent, or full when parent is "". It returns
	// once the stream is written, or with the error that stopped it (w's
	// error when w failed); a stream that ends with an error is incomplete.
	Send(ctx context.Context, snapshot, parent string, w io.Writer) error
	// Receive reads one btrfs send stream from r and creates the subvolume
	// it carries in the directory dir, confined to dir. It returns when the
	// stream's end command was applied or receiving failed; a failure may
	// leave a partial, writable subvolume in dir, which the caller deletes.
	// It stops reading r when it returns (a Read in progress may finish
	// later; its data is dropped).
	Receive(ctx context.Context, dir string, r io.Reader) error
}
