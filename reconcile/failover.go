package reconcile

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

// Failover, as this package sees it. A replicated share has two
// appliances: the spec's (share.appliance, share.pool) and the replica
// (replication.to). One of them is active: it holds the share's writable
// subvolume and replicates it to the other. The Raft store says which, as
// a schema.Activation per share; without one the spec's appliance is active at
// epoch 0. After a failover to the replica:
//
//   - the replica promotes: it takes a writable snapshot of its newest
//     received snapshot as <pool>/<share> (promote). The received
//     snapshot stays, read-only with its received UUID, as the common base
//     of the first reverse incremental.
//   - the old active is demoted: its share subvolume is kept as it is (the
//     store's fencing keeps it read-only), never recreated, repaired or
//     snapshotted on schedule. Writes it took after its last replication
//     snapshot are kept as a read-only snapshot in
//     <pool>/.fleetctl/diverged/<share>.<stamp> (keep-diverged), never
//     deleted.
//   - replication runs from the new active to the old one, incremental from
//     the received snapshot the share was promoted from: its received UUID
//     is the UUID of the old active's replication snapshot, which the old
//     active still holds, and btrfs receive finds a parent by received UUID
//     first and by UUID next.

// placeOf is where sh's copies are as active says (nil, or no activation
// for the share: as the spec says); see schema.Share.Place.
func placeOf(active func(string) schema.Activation, sh *schema.Share) (schema.Placement, bool) {
	var a schema.Activation
	if active != nil {
		a = active(sh.Name)
	}
	return sh.Place(a)
}

// SharePool is the pool of appliance that holds the share's copy: on the
// share's spec appliance its spec pool, on its replication.to appliance
// the replication.to pool; nil when the appliance holds no copy or the
// spec lacks the pool. Which copy is the writable one is the Placement's
// business: the effective placement of a share is SharePool of its active
// appliance.
func SharePool(spec *schema.Spec, sh *schema.Share, appliance string) *schema.Pool {
	if spec == nil || sh == nil {
		return nil
	}
	var pool string
	switch {
	case appliance == sh.Appliance:
		pool = sh.Pool
	case sh.Replication != nil && sh.Replication.To.Appliance == appliance:
		pool = sh.Replication.To.Pool
	default:
		return nil
	}
	a := spec.Appliance(appliance)
	if a == nil {
		return nil
	}
	return a.Pool(pool)
}

// unchangedSince says the subvolume share has not changed since snap was
// taken of it: snap is a snapshot of share (its parent UUID) created in a
// transaction no older than share's last change. Taking a snapshot bumps
// the source's generation to the snapshot's creation generation, so an
// untouched share equals it. Conservative: an atime update is a change
// too, so at worst an identical copy is kept, never a change missed.
func unchangedSince(share, snap Subvolume) bool {
	return share.UUID != "" && snap.ParentUUID == share.UUID &&
		snap.CreationGeneration > 0 && share.Generation <= snap.CreationGeneration
}

// olderThanReceived says the share subvolume was last changed before this
// appliance received rs, its newest received snapshot: the share is a
// copy left from before this appliance was demoted, and the received
// snapshot holds newer data of the other appliance. A promoted share is
// younger than every received snapshot it could have been promoted from;
// received snapshots arrive only while the appliance is not active.
func olderThanReceived(share Subvolume, rs *receivedSnap) bool {
	return rs != nil && rs.sv.CreationGeneration > share.Generation
}

// DivergedPath is where keep-diverged keeps a demoted share's writes: the
// read-only snapshot <pool>/.fleetctl/diverged/<share>.<stamp>.
func DivergedPath(pool, share string, t time.Time) string {
	return filepath.Join(pool, DivergedDir, share+"."+t.UTC().Format(StampFormat))
}

// divergedShare is the share a diverged snapshot's name <share>.<stamp>
// belongs to, if it is one.
func divergedShare(name string) (string, bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", false
	}
	share := name[:i]
	_, ok := parseSnapshotName(share, name)
	return share, ok
}

// active plans a share this appliance is active for, on the pool of its
// effective placement.
func (pp *poolPlanner) active(sh *schema.Share, act schema.Placement) {
	p := pp.pool
	path := filepath.Join(p.Path, sh.Name)
	sv, exists := pp.top[sh.Name]
	if sh.State == schema.StateAbsent {
		pp.absent(sh, act, path, sv, exists)
		return
	}
	received := pp.newestReceived(sh.Name)
	if exists && olderThanReceived(sv, received) {
		// The copy left from before this appliance was demoted (it is
		// active again after a failback): the newer data is the received
		// snapshot. The old copy is renamed aside in the pool, where it is
		// kept and reported as orphaned, never deleted; then the newest
		// received snapshot is promoted in its place.
		aside := BeforeEpochPath(p.Path, sh.Name, act.Epoch)
		pp.create = append(pp.create, Action{
			Kind: ActionSetAside, Pool: p.Name, Share: sh.Name, Path: aside, Source: path,
			Detail: "as " + filepath.Base(aside),
			Reason: fmt.Sprintf("share %s is active on %s again at epoch %d, but %s was last changed before %s arrived: it is the copy from before this appliance was demoted, kept as %s (reported as orphaned, never deleted)",
				sh.Name, pp.in.Appliance, act.Epoch, path, filepath.Join(p.Path, received.sv.Path), aside),
		})
		exists, sv = false, Subvolume{}
	}
	switch {
	case !exists && len(pp.nested[sh.Name]) > 0:
		// A plain directory with subvolumes in it sits where the share
		// belongs; creating would fail, and only a person can sort it out.
		pp.blocked = append(pp.blocked, Action{
			Kind: ActionBlocked, Pool: p.Name, Share: sh.Name, Path: path, ReportOnly: true,
			Detail: "a directory holding subvolumes is in the way",
			Reason: fmt.Sprintf("%s is a plain directory holding subvolumes (%s), not a subvolume; move it away so the share can be created", path, strings.Join(pp.nested[sh.Name], ", ")),
		})
		return
	case !exists && received != nil:
		src := filepath.Join(p.Path, received.sv.Path)
		pp.create = append(pp.create, Action{
			Kind: ActionPromote, Pool: p.Name, Share: sh.Name, Path: path, Source: src,
			Detail: "from " + received.name,
			Reason: fmt.Sprintf("share %s is active on %s at epoch %d but %s does not exist: a writable snapshot of the newest received snapshot %s becomes the share, and the read-only one stays as the base of the next incremental",
				sh.Name, pp.in.Appliance, act.Epoch, path, src),
		})
	case !exists && (act.Epoch > 0 || pp.in.Appliance != sh.Appliance):
		pp.blocked = append(pp.blocked, Action{
			Kind: ActionBlocked, Pool: p.Name, Share: sh.Name, Path: path, ReportOnly: true,
			Detail: "active here after failover but nothing was ever received",
			Reason: fmt.Sprintf("share %s is active on %s at epoch %d, but %s does not exist and no completed received snapshot of it is in %s; an empty share would hide that its data is elsewhere, so none is created",
				sh.Name, pp.in.Appliance, act.Epoch, path, filepath.Join(p.Path, ReceivedDir, sh.Name)),
		})
		return
	case !exists:
		pp.createShare(sh, path)
	}
	pp.shareQuota(sh, path, sv, exists)
	if sh.Snapshots != nil {
		pp.snapshots(sh, path, filepath.Join(p.Path, SnapshotDir, sh.Name), pp.snaps[sh.Name])
	}
}

// demoted plans a share another appliance is active for, on this
// appliance's copy: it reports it, keeps the writes the copy took after
// its last replication snapshot, and changes nothing else.
func (pp *poolPlanner) demoted(sh *schema.Share, act schema.Placement) {
	p := pp.pool
	path := filepath.Join(p.Path, sh.Name)
	sv, exists := pp.top[sh.Name]
	a := Action{
		Kind: ActionDemoted, Pool: p.Name, Share: sh.Name, Path: path, ReportOnly: true,
		Detail: fmt.Sprintf("epoch %d active on %s; kept read-only", act.Epoch, act.Active.Appliance),
		Reason: fmt.Sprintf("share %s is active on %s at epoch %d; this appliance's copy %s is kept as it is, neither recreated nor snapshotted, and receives the share's replication",
			sh.Name, act.Active.Appliance, act.Epoch, path),
	}
	if !exists {
		a.Detail = fmt.Sprintf("epoch %d active on %s; no copy here", act.Epoch, act.Active.Appliance)
		a.Reason = fmt.Sprintf("share %s is active on %s at epoch %d; this appliance has no copy at %s and makes none",
			sh.Name, act.Active.Appliance, act.Epoch, path)
	}
	if n := len(pp.diverged[sh.Name]); n > 0 {
		a.Reason += fmt.Sprintf("; %d diverged snapshot%s of it %s kept in %s", n, plural(n), isAre(n), filepath.Join(p.Path, DivergedDir))
	}
	if sh.State == schema.StateAbsent {
		a.Reason += fmt.Sprintf("; it is marked state: absent, so it is deleted on %s, where it is active, after a final snapshot there; this appliance's copies are kept", act.Active.Appliance)
	}
	pp.demote = append(pp.demote, a)
	if !exists {
		return
	}

	repl := pp.repl[sh.Name]
	var last *sourceSnap
	if n := len(repl); n > 0 {
		last = &repl[n-1]
	}
	if last != nil && unchangedSince(sv, last.sv) {
		return // nothing written after the last replication snapshot
	}
	for _, d := range pp.diverged[sh.Name] {
		if unchangedSince(sv, d) {
			return // kept already
		}
	}
	dst := DivergedPath(p.Path, sh.Name, pp.in.Now)
	for _, d := range pp.diverged[sh.Name] {
		if filepath.Join(p.Path, d.Path) == dst {
			return // taken this second; the next plan takes another
		}
	}
	reason := fmt.Sprintf("share %s is active on %s at epoch %d, and %s was never replicated from here: its data is on no other appliance, so a read-only snapshot of it is kept, never deleted",
		sh.Name, act.Active.Appliance, act.Epoch, path)
	if last != nil {
		reason = fmt.Sprintf("share %s is active on %s at epoch %d, and %s changed after its last replication snapshot %s: those writes are on no other appliance, so a read-only snapshot of them is kept, never deleted",
			sh.Name, act.Active.Appliance, act.Epoch, path, filepath.Join(p.Path, last.sv.Path))
	}
	k := Action{
		Kind: ActionKeepDiverged, Pool: p.Name, Share: sh.Name, Path: dst, Source: path,
		Detail: "as " + filepath.Join(DivergedDir, filepath.Base(dst)),
		Reason: reason,
	}
	pp.keep = append(pp.keep, k)
}

// newestReceived is the share's newest completed received snapshot on the
// pool, or nil.
func (pp *poolPlanner) newestReceived(share string) *receivedSnap {
	rs := pp.received[share]
	if len(rs) == 0 {
		return nil
	}
	return &rs[len(rs)-1]
}
