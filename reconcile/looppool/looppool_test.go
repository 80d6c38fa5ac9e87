package looppool

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// attachedTo lists the loop devices attached to image, as losetup -j does.
func attachedTo(t *testing.T, image string) string {
	t.Helper()
	out, err := exec.Command("losetup", "-j", image).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -j %s: %v: %s", image, err, out)
	}
	return strings.TrimSpace(string(out))
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	m, err := Mounted(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// assertGone checks that nothing of the pool is left: no mount, no loop
// device, no image, no mount directory.
func assertGone(t *testing.T, p *Pool) {
	t.Helper()
	if mounted(t, p.Path()) {
		t.Errorf("%s is still mounted", p.Path())
	}
	if _, err := os.Stat(p.Image()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("image %s: want it removed, stat says %v", p.Image(), err)
	} else if got := backingFile(p.Device()); strings.HasPrefix(got, p.Image()) {
		t.Errorf("%s is still attached to %s", p.Device(), got)
	}
	if _, err := os.Stat(p.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mount dir %s: want it removed, stat says %v", p.Path(), err)
	}
}

func requireAvailable(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real-btrfs test cannot run on CI: %v", err)
		}
		t.Skipf("real-btrfs test skipped: %v", err)
	}
}

func TestCreateClose(t *testing.T) {
	requireAvailable(t)
	dir := t.TempDir()
	p, err := Create(context.Background(), dir, "tank", 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Path() != filepath.Join(dir, "tank") || p.Image() != filepath.Join(dir, "tank.img") {
		t.Errorf("Path %s, Image %s: want them in %s", p.Path(), p.Image(), dir)
	}
	if !mounted(t, p.Path()) {
		t.Errorf("%s is not mounted", p.Path())
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p.Path(), &st); err != nil || uint32(st.Type) != 0x9123683e {
		t.Errorf("statfs %s: type %#x, err %v; want btrfs", p.Path(), st.Type, err)
	}
	if got := attachedTo(t, p.Image()); !strings.HasPrefix(got, p.Device()+":") {
		t.Errorf("losetup -j %s = %q, want %s", p.Image(), got, p.Device())
	}
	if fi, err := os.Stat(p.Image()); err != nil || fi.Size() != DefaultSize {
		t.Errorf("image: %v, %v; want %d bytes", fi, err, DefaultSize)
	}
	if err := os.WriteFile(filepath.Join(p.Path(), "f"), []byte("data"), 0o600); err != nil {
		t.Errorf("write into the pool: %v", err)
	}
	image := p.Image()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	assertGone(t, p)
	// The image is removed, so losetup -j cannot check it; the device must
	// not hold it either.
	if got := backingFile(p.Device()); strings.Contains(got, image) {
		t.Errorf("%s still backed by %s", p.Device(), got)
	}
}

func TestCreateUndoesOnFailure(t *testing.T) {
	requireAvailable(t)
	dir := t.TempDir()
	// A file where the mount directory goes makes Create fail after the
	// loop device is attached and formatted.
	if err := os.WriteFile(filepath.Join(dir, "tank"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Create(context.Background(), dir, "tank", 0)
	if err == nil {
		p.Close()
		t.Fatal("Create succeeded over a file at the mount path")
	}
	if !strings.Contains(err.Error(), "create loop pool tank") || !strings.Contains(err.Error(), "file exists") {
		t.Errorf("error = %v, want it to say which pool and why", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tank.img")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("image left behind: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tank")); err != nil || fi.IsDir() {
		t.Errorf("the file in the way was touched: %v, %v", fi, err)
	}
	out, _ := exec.Command("losetup", "-a").CombinedOutput()
	if strings.Contains(string(out), filepath.Join(dir, "tank.img")) {
		t.Errorf("loop device left behind:\n%s", out)
	}
}

func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		size int64
		want string
	}{
		{"a/b", 0, "bad name"},
		{"..", 0, "bad name"},
		{"small", 100 << 20, "below the minimum"},
	} {
		if _, err := Create(context.Background(), dir, tc.name, tc.size); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%q, %d) = %v, want an error with %q", tc.name, tc.size, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused Creates left %v", entries)
	}
}

func TestCloseBusyUnmountsLazily(t *testing.T) {
	requireAvailable(t)
	p, err := Create(context.Background(), t.TempDir(), "busy", 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(p.Path(), "held-open"))
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	err = p.Close()
	f.Close()
	if err == nil || !strings.Contains(err.Error(), "umount -l") {
		t.Errorf("Close of a busy pool = %v, want it to report the lazy unmount", err)
	}
	if mounted(t, p.Path()) {
		t.Errorf("%s is still mounted", p.Path())
	}
	// With the file closed the filesystem goes, and losetup -d's autoclear
	// frees the loop device.
	deadline := time.Now().Add(10 * time.Second)
	for backingFile(p.Device()) != "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := backingFile(p.Device()); got != "" {
		t.Errorf("%s still attached to %s", p.Device(), got)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close after the lazy unmount: %v", err)
	}
	assertGone(t, p)
}

// TestMountedEscapedPaths mounts at paths the kernel escapes in mountinfo
// (a space, a tab, a newline, a backslash): Mounted finds each of them,
// and no longer once it is unmounted.
func TestMountedEscapedPaths(t *testing.T) {
	requireAvailable(t)
	for _, name := range []string{"a", "with space", "tab\tnl\nx", `back\slash`} {
		path := filepath.Join(t.TempDir(), name)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "fleetctl-test", path).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs at %q: %v: %s", path, err, out)
		}
		t.Cleanup(func() { exec.Command("umount", path).Run() }) // when a check below stops the test
		if !mounted(t, path) {
			t.Errorf("Mounted(%q) = false after mounting there", path)
		}
		if out, err := exec.Command("umount", path).CombinedOutput(); err != nil {
			t.Fatalf("umount %q: %v: %s", path, err, out)
		}
		if mounted(t, path) {
			t.Errorf("Mounted(%q) = true after unmounting", path)
		}
	}
}
