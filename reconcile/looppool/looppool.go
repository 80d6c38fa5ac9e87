// Package looppool makes loop-mounted btrfs filesystems for the demo fleet
// and the tests: a sparse image file, a loop device, mkfs.btrfs and a mount,
// all undone by Close. It needs root, a kernel with btrfs, util-linux and
// btrfs-progs; Available says which of these is missing.
package looppool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
)

const (
	// MinSize is the smallest pool Create makes: mkfs.btrfs needs about
	// 114 MiB for its default profiles, and tests need room to write.
	MinSize = 256 << 20
	// DefaultSize is the size Create uses when asked for 0.
	DefaultSize = MinSize
	// closeTimeout bounds the commands Close runs.
	closeTimeout = 30 * time.Second
)

// Pool is a btrfs filesystem on a loop device, mounted at Path.
type Pool struct {
	name, image, mountPath, device string

	mu sync.Mutex
	// What Close still has to undo.
	mounted, attached, madeDir, madeImage bool
}

// Path is the mount path of the pool's filesystem.
func (p *Pool) Path() string { return p.mountPath }

// Device is the pool's loop device, like /dev/loop3.
func (p *Pool) Device() string { return p.device }

// Image is the pool's sparse image file.
func (p *Pool) Image() string { return p.image }

// Create makes a pool called name in dir: the sparse image dir/name.img of
// size bytes (DefaultSize when 0), attached to a free loop device, made a
// btrfs filesystem labelled name and mounted at dir/name. When a step fails
// it undoes the ones before and returns the error.
func Create(ctx context.Context, dir, name string, size int64) (*Pool, error) {
	if size == 0 {
		size = DefaultSize
	}
	p := &Pool{
		name:      name,
		image:     filepath.Join(dir, name+".img"),
		mountPath: filepath.Join(dir, name),
	}
	if err := p.create(ctx, size); err != nil {
		if cerr := p.Close(); cerr != nil {
			err = fmt.Errorf("%w (and undoing it: %v)", err, cerr)
		}
		return nil, fmt.Errorf("create loop pool %s in %s: %w", name, dir, err)
	}
	return p, nil
}

func (p *Pool) create(ctx context.Context, size int64) error {
	if p.name == "" || p.name == "." || p.name == ".." || strings.ContainsAny(p.name, "/\x00") {
		return fmt.Errorf("bad name %q: want a file name", p.name)
	}
	if size < MinSize {
		return fmt.Errorf("size %d is below the minimum %d (256 MiB)", size, MinSize)
	}
	f, err := os.OpenFile(p.image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	p.madeImage = true
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := run(ctx, "losetup", "--find", "--show", p.image)
	if err != nil {
		return err
	}
	p.device = strings.TrimSpace(out)
	if !strings.HasPrefix(p.device, "/dev/") {
		return fmt.Errorf("losetup --find --show %s: unexpected output %q", p.image, out)
	}
	p.attached = true
	if _, err := run(ctx, "mkfs.btrfs", "-q", "-L", p.name, p.device); err != nil {
		return err
	}
	if err := os.Mkdir(p.mountPath, 0o755); err != nil {
		return err
	}
	p.madeDir = true
	if _, err := run(ctx, "mount", "-t", "btrfs", p.device, p.mountPath); err != nil {
		return err
	}
	p.mounted = true
	return nil
}

// Close unmounts the pool, detaches its loop device and removes the image
// and the mount directory. A busy mount is retried for a few seconds, then
// unmounted lazily (umount -l) as a last resort, which Close reports as an
// error though it goes on: the filesystem and its loop device go away when
// their last user lets go. Close may be called again, also after an error,
// to finish what is left.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	if p.mounted {
		lazy, err := unmount(ctx, p.mountPath)
		if err == nil || lazy {
			p.mounted = false
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if p.attached {
		if _, err := run(ctx, "losetup", "-d", p.device); err != nil && backingFile(p.device) != "" {
			errs = append(errs, err)
		} else {
			p.attached = false
		}
	}
	if p.madeImage {
		if err := os.Remove(p.image); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		} else {
			p.madeImage = false
		}
	}
	if p.madeDir && !p.mounted {
		if err := os.Remove(p.mountPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		} else {
			p.madeDir = false
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close loop pool %s: %w", p.mountPath, err)
	}
	return nil
}

// unmount unmounts path, retrying while it is busy, then lazily. lazy
// reports that it fell back to umount -l.
func unmount(ctx context.Context, path string) (lazy bool, err error) {
	backoff, waited := 20*time.Millisecond, time.Duration(0)
	for attempt := 1; ; attempt++ {
		_, err = run(ctx, "umount", path)
		if err == nil {
			return false, nil
		}
		if m, merr := Mounted(path); merr == nil && !m {
			return false, nil // someone else unmounted it
		}
		if !strings.Contains(err.Error(), "busy") || attempt == 8 {
			break
		}
		time.Sleep(backoff)
		waited += backoff
		backoff *= 2
	}
	if !strings.Contains(err.Error(), "busy") {
		return false, err
	}
	if _, lerr := run(ctx, "umount", "-l", path); lerr != nil {
		return false, fmt.Errorf("%w; umount -l failed too: %v", err, lerr)
	}
	return true, fmt.Errorf("%s stayed busy for %v, so it was unmounted lazily (umount -l); it goes away when its last user lets go: %w",
		path, waited.Round(10*time.Millisecond), err)
}

// backingFile is the image a loop device is attached to, "" when it is not
// attached (or not a loop device).
func backingFile(device string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(device), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Mounted reports whether something is mounted at path, by the kernel's
// mount table (mountinfo, with its octal escapes such as \040 for a space
// undone). A path that does not exist is not mounted.
func Mounted(path string) (bool, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(filepath.Clean(path)))
	if err != nil {
		return false, err
	}
	return len(mounts) > 0, nil
}

// run runs a command with LC_ALL=C (its messages are matched) and returns
// its stdout; an error holds the command line and its stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		line := strings.Join(append([]string{name}, args...), " ")
		if ctx.Err() != nil {
			err = fmt.Errorf("killed (%w)", ctx.Err())
		}
		if msg := strings.Join(strings.Fields(stderr.String()), " "); msg != "" {
			return stdout.String(), fmt.Errorf("%s: %w: %s", line, err, msg)
		}
		return stdout.String(), fmt.Errorf("%s: %w", line, err)
	}
	return stdout.String(), nil
}

// Available returns nil when loop pools can be made here, or why not: not
// Linux, not root, a missing command, no loop devices, or a kernel without
// btrfs (after trying modprobe btrfs).
func Available() error { return available() }

var available = sync.OnceValue(func() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("loop-mounted btrfs needs Linux, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("not root: loop devices and mount need root")
	}
	for _, c := range []struct{ cmd, pkg string }{
		{"losetup", "util-linux"}, {"mount", "util-linux"}, {"umount", "util-linux"},
		{"mkfs.btrfs", "btrfs-progs"}, {"btrfs", "btrfs-progs"},
	} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			return fmt.Errorf("%s is not on PATH (install %s)", c.cmd, c.pkg)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		if _, err0 := os.Stat("/dev/loop0"); err0 != nil {
			return fmt.Errorf("no loop devices: %v (a container needs --privileged)", err)
		}
	}
	if !kernelHasBtrfs() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := run(ctx, "modprobe", "btrfs")
		if !kernelHasBtrfs() {
			return fmt.Errorf("the kernel has no btrfs: not in /proc/filesystems, and modprobe btrfs failed: %v", err)
		}
	}
	return nil
})

func kernelHasBtrfs() bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == "btrfs" {
			return true
		}
	}
	return false
}
