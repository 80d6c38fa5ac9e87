package reconcile

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// The driver's reads of a pool (its subvolumes and its qgroups) go through
// the btrfs ioctls that btrfs-progs itself uses for "btrfs subvolume list"
// and "btrfs qgroup show", in this process: a no-op reconcile of a pool then
// runs no command. No Go library of these ioctls is available to this
// project (none is served by its module proxy), so the few structures
// needed are here, laid out as in linux/btrfs.h and
// linux/btrfs_tree.h. Both ioctls need CAP_SYS_ADMIN, as the commands do.

const (
	// ioctlTreeSearchV2 is BTRFS_IOC_TREE_SEARCH_V2,
	// _IOWR(0x94, 17, struct btrfs_ioctl_search_args_v2): 112 bytes.
	ioctlTreeSearchV2 = 0xc0709411
	// ioctlInoLookup is BTRFS_IOC_INO_LOOKUP,
	// _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args): 4096 bytes.
	ioctlInoLookup = 0xd0009412

	// searchKeySize is sizeof(struct btrfs_ioctl_search_key); the v2
	// arguments add buf_size (a u64), then the buffer.
	searchKeySize = 104
	// searchHeaderSize is sizeof(struct btrfs_ioctl_search_header).
	searchHeaderSize = 32
	// listBuffer is the buffer of a search that lists: about 500
	// subvolumes (a root item and a back reference each) at a time.
	listBuffer = 256 << 10
	// itemBuffer is the buffer of a search for one small item.
	itemBuffer = 4 << 10

	// inoLookupPathMax is BTRFS_INO_LOOKUP_PATH_MAX.
	inoLookupPathMax = 4080

	rootTreeID  = 1 // BTRFS_ROOT_TREE_OBJECTID
	quotaTreeID = 8 // BTRFS_QUOTA_TREE_OBJECTID

	// lastFreeObjectID is BTRFS_LAST_FREE_OBJECTID, (u64)-256: subvolume
	// IDs run from subvolumeRootIno (256) to it.
	lastFreeObjectID = math.MaxUint64 - 255

	rootItemKey     = 132 // BTRFS_ROOT_ITEM_KEY
	rootBackrefKey  = 144 // BTRFS_ROOT_BACKREF_KEY
	qgroupStatusKey = 240 // BTRFS_QGROUP_STATUS_KEY
	qgroupInfoKey   = 242 // BTRFS_QGROUP_INFO_KEY
	qgroupLimitKey  = 244 // BTRFS_QGROUP_LIMIT_KEY

	// rootSubvolReadOnly is BTRFS_ROOT_SUBVOL_RDONLY, in a root item's flags.
	rootSubvolReadOnly = 1
	// qgroupLimitMaxRfer is BTRFS_QGROUP_LIMIT_MAX_RFER: max_rfer is set.
	qgroupLimitMaxRfer = 1
	// qgroupLevelShift puts a qgroup's level above its 48-bit ID.
	qgroupLevelShift = 48
)

// Offsets in struct btrfs_root_item (packed, little endian).
const (
	rootItemGeneration = 160 // after the 160-byte inode item
	rootItemFlags      = 208
	// rootItemV0Size is the size of the old root item, without UUIDs and
	// times; btrfs-progs reads them only from a longer one.
	rootItemV0Size     = 239
	rootItemUUID       = 247
	rootItemParentUUID = 263
	rootItemRecvUUID   = 279
	rootItemOtransid   = 303
	rootItemEnd        = 311 // enough of it for the fields above
)

// treeKey is a btrfs key: items of a tree sort by (objectid, type, offset).
type treeKey struct {
	objectid uint64
	typ      uint32
	offset   uint64
}

// next is the smallest key after k, and false after the last key.
func (k treeKey) next() (treeKey, bool) {
	switch {
	case k.offset < math.MaxUint64:
		k.offset++
	case k.typ < math.MaxUint8:
		k.typ, k.offset = k.typ+1, 0
	case k.objectid < math.MaxUint64:
		k.objectid, k.typ, k.offset = k.objectid+1, 0, 0
	default:
		return k, false
	}
	return k, true
}

// searchItem is one item a tree search found: its key and its data.
type searchItem struct {
	key  treeKey
	data []byte
}

// ioctl calls the ioctl req on f with arg.
func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// treeSearch calls fn with every item of the tree whose key lies between
// from and to (as keys compare), in key order, with BTRFS_IOC_TREE_SEARCH_V2
// on f, a file of the filesystem. The data given to fn is valid during the
// call only. bufSize is the size of the buffer each ioctl fills.
func treeSearch(ctx context.Context, f *os.File, tree uint64, from, to treeKey, bufSize int, fn func(searchItem) error) error {
	// The arguments, as 8-byte words so the buffer is aligned for the
	// kernel's u64s.
	words := make([]uint64, (searchKeySize+8+bufSize)/8)
	args := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	ne := binary.NativeEndian
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		clear(args[:searchKeySize+8])
		ne.PutUint64(args[0:], tree)
		ne.PutUint64(args[8:], from.objectid)
		ne.PutUint64(args[16:], to.objectid)
		ne.PutUint64(args[24:], from.offset)
		ne.PutUint64(args[32:], to.offset)
		ne.PutUint64(args[40:], 0)              // min_transid
		ne.PutUint64(args[48:], math.MaxUint64) // max_transid
		ne.PutUint32(args[56:], from.typ)
		ne.PutUint32(args[60:], to.typ)
		ne.PutUint32(args[64:], math.MaxUint32) // nr_items: as many as fit
		ne.PutUint64(args[searchKeySize:], uint64(bufSize))
		if err := ioctl(f, ioctlTreeSearchV2, unsafe.Pointer(&words[0])); err != nil {
			return fmt.Errorf("search tree %d: %w", tree, err)
		}
		n := ne.Uint32(args[64:])
		if n == 0 {
			return nil
		}
		buf := args[searchKeySize+8:]
		var last treeKey
		for range n {
			if len(buf) < searchHeaderSize {
				return fmt.Errorf("search tree %d: short result", tree)
			}
			last = treeKey{objectid: ne.Uint64(buf[8:]), typ: ne.Uint32(buf[24:]), offset: ne.Uint64(buf[16:])}
			size := int(ne.Uint32(buf[28:]))
			if len(buf) < searchHeaderSize+size {
				return fmt.Errorf("search tree %d: short item", tree)
			}
			if err := fn(searchItem{key: last, data: buf[searchHeaderSize : searchHeaderSize+size]}); err != nil {
				return err
			}
			buf = buf[searchHeaderSize+size:]
		}
		var ok bool
		if from, ok = last.next(); !ok {
			return nil
		}
	}
}

// inoLookup returns, with BTRFS_IOC_INO_LOOKUP on f, the path of the
// directory dirID inside the subvolume tree, relative to the subvolume's
// root and ending in "/" ("" for the root itself); with tree 0 it returns
// the ID of the subvolume that holds f as tree.
func inoLookup(f *os.File, tree, dirID uint64) (string, uint64, error) {
	var args struct {
		treeid   uint64
		objectid uint64
		name     [inoLookupPathMax]byte
	}
	args.treeid, args.objectid = tree, dirID
	if err := ioctl(f, ioctlInoLookup, unsafe.Pointer(&args)); err != nil {
		return "", 0, fmt.Errorf("look up directory %d of subvolume %d: %w", dirID, tree, err)
	}
	name := args.name[:]
	if i := strings.IndexByte(string(name), 0); i >= 0 {
		name = name[:i]
	}
	return string(name), args.treeid, nil
}

// formatUUID writes a btrfs UUID as btrfs-progs does (lower-case hex,
// 8-4-4-4-12); the zero UUID, btrfs's "none", is "".
func formatUUID(b []byte) string {
	if len(b) != 16 || allZero(b) {
		return ""
	}
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// rootRef is a subvolume's back reference: where it is linked.
type rootRef struct {
	parent, dirID uint64
	name          string
}

// listSubvolumes lists every subvolume of the filesystem of f, as
// "btrfs subvolume list -a -puqR -gc" and "-r" would, but in one search of
// the root tree: its root items (generation, flags, UUIDs, creation
// generation) and back references (parent, directory, name). A path is
// relative to the top level, built from the back references and one
// BTRFS_IOC_INO_LOOKUP per directory holding subvolumes that is not a
// subvolume's root. A subvolume that is deleted but not yet cleaned up has
// no back reference and is left out, as btrfs-progs leaves it out.
func listSubvolumes(ctx context.Context, f *os.File) ([]listEntry, map[uint64]bool, error) {
	le := binary.LittleEndian
	var entries []listEntry
	refs := map[uint64]rootRef{}
	readOnly := map[uint64]bool{}
	err := treeSearch(ctx, f, rootTreeID,
		treeKey{objectid: subvolumeRootIno, typ: rootItemKey},
		treeKey{objectid: lastFreeObjectID, typ: rootBackrefKey, offset: math.MaxUint64},
		listBuffer, func(it searchItem) error {
			d := it.data
			switch it.key.typ {
			case rootItemKey:
				if len(d) < rootItemV0Size {
					return fmt.Errorf("root item of %d: %d bytes", it.key.objectid, len(d))
				}
				e := listEntry{ID: it.key.objectid, Gen: le.Uint64(d[rootItemGeneration:]), hasID: true}
				if le.Uint64(d[rootItemFlags:])&rootSubvolReadOnly != 0 {
					readOnly[e.ID] = true
				}
				if len(d) >= rootItemEnd {
					e.UUID = formatUUID(d[rootItemUUID : rootItemUUID+16])
					e.ParentUUID = formatUUID(d[rootItemParentUUID : rootItemParentUUID+16])
					e.ReceivedUUID = formatUUID(d[rootItemRecvUUID : rootItemRecvUUID+16])
					e.CGen = le.Uint64(d[rootItemOtransid:])
				}
				entries = append(entries, e)
			case rootBackrefKey:
				// struct btrfs_root_ref: dirid, sequence, name_len, name.
				if len(d) < 18 || len(d) < 18+int(le.Uint16(d[16:])) {
					return fmt.Errorf("back reference of %d: %d bytes", it.key.objectid, len(d))
				}
				if _, dup := refs[it.key.objectid]; !dup {
					refs[it.key.objectid] = rootRef{parent: it.key.offset, dirID: le.Uint64(d[0:]), name: string(d[18 : 18+le.Uint16(d[16:])])}
				}
			}
			return nil
		})
	if err != nil {
		return nil, nil, err
	}

	paths := map[uint64]string{topLevelID: ""}
	type dirKey struct{ tree, dir uint64 }
	dirs := map[dirKey]string{}
	var pathOf func(id uint64, depth int) (string, bool, error)
	pathOf = func(id uint64, depth int) (string, bool, error) {
		if p, ok := paths[id]; ok {
			return p, true, nil
		}
		ref, ok := refs[id]
		if !ok || depth > 4096 {
			return "", false, nil
		}
		parent, ok, err := pathOf(ref.parent, depth+1)
		if !ok || err != nil {
			return "", ok, err
		}
		dir := ""
		if ref.dirID != subvolumeRootIno {
			k := dirKey{ref.parent, ref.dirID}
			if dir, ok = dirs[k]; !ok {
				dir, _, err = inoLookup(f, ref.parent, ref.dirID)
				if errors.Is(err, syscall.ENOENT) {
					return "", false, nil // removed while listing
				}
				if err != nil {
					return "", false, err
				}
				dirs[k] = dir
			}
		}
		p := dir + ref.name
		if parent != "" {
			p = parent + "/" + p
		}
		paths[id] = p
		return p, true, nil
	}
	out := entries[:0]
	for _, e := range entries {
		p, ok, err := pathOf(e.ID, 0)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		e.Path, e.hasPath = p, true
		e.Parent, e.hasParent = refs[e.ID].parent, true
		e.TopLevel = e.Parent
		out = append(out, e)
	}
	return out, readOnly, nil
}

// readQgroups reads the level-0 qgroups of the filesystem of f from its
// quota tree: the usage of each (its info item) and its limit on
// referenced bytes (its limit item). It fails with ErrQuotaDisabled when
// the filesystem has no quota tree.
func readQgroups(ctx context.Context, f *os.File) (map[uint64]Qgroup, error) {
	le := binary.LittleEndian
	q := map[uint64]Qgroup{}
	err := treeSearch(ctx, f, quotaTreeID,
		treeKey{typ: qgroupInfoKey},
		treeKey{typ: qgroupLimitKey, offset: math.MaxUint64},
		listBuffer, func(it searchItem) error {
			if it.key.objectid != 0 || it.key.offset>>qgroupLevelShift != 0 {
				return nil // not a level-0 qgroup
			}
			id, d := it.key.offset, it.data
			g := q[id]
			switch it.key.typ {
			case qgroupInfoKey:
				// struct btrfs_qgroup_info_item: generation, rfer,
				// rfer_cmpr, excl, excl_cmpr.
				if len(d) < 40 {
					return fmt.Errorf("qgroup info of 0/%d: %d bytes", id, len(d))
				}
				g.Referenced, g.Exclusive = le.Uint64(d[8:]), le.Uint64(d[24:])
			case qgroupLimitKey:
				// struct btrfs_qgroup_limit_item: flags, max_rfer, ...
				if len(d) < 16 {
					return fmt.Errorf("qgroup limit of 0/%d: %d bytes", id, len(d))
				}
				if le.Uint64(d[0:])&qgroupLimitMaxRfer != 0 {
					g.MaxReferenced = le.Uint64(d[8:])
				}
			default:
				return nil
			}
			q[id] = g
			return nil
		})
	if errors.Is(err, syscall.ENOENT) {
		return nil, fmt.Errorf("%w: %w", ErrQuotaDisabled, err)
	}
	if err != nil {
		return nil, err
	}
	return q, nil
}

// quotaEnabled reports whether the filesystem of f has quotas enabled: a
// quota tree, with its status item.
func quotaEnabled(ctx context.Context, f *os.File) (bool, error) {
	found := false
	err := treeSearch(ctx, f, quotaTreeID, treeKey{typ: qgroupStatusKey}, treeKey{typ: qgroupStatusKey}, itemBuffer, func(searchItem) error {
		found = true
		return nil
	})
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return found, nil
}
