package reconcile

import (
	"fmt"
	"syscall"
)

// PoolSpace is a pool's filesystem size, used and free bytes, as statfs(2)
// says them. On btrfs these are the kernel's estimates (free is what an
// unprivileged writer may still use); `btrfs filesystem usage` says more.
type PoolSpace struct {
	Size uint64 `json:"size"`
	Used uint64 `json:"used"`
	Free uint64 `json:"free"`
}

// StatPool reads the space of the filesystem mounted at path.
func StatPool(path string) (PoolSpace, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return PoolSpace{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return PoolSpace{Size: st.Blocks * bs, Used: (st.Blocks - st.Bfree) * bs, Free: st.Bavail * bs}, nil
}
