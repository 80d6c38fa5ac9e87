package reconcile

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
)

// Files restored onto another appliance than the copy's (fleetctl restore
// --path P --to DIR --on B: say, a diverged file onto the share's active
// copy) travel as a tar stream: the holder writes it with WriteTar, the
// other appliance extracts it with ExtractTar into DIR through an os.Root,
// so that no name, link or crafted entry in the stream can write outside
// DIR.

// WriteTar writes src (RestoreSource's answer) of the copy at snap as a
// tar stream to w, named as RestoreFiles would place them in a directory:
// the copy's contents for the whole copy, else src's base name and what is
// below it. Regular files, directories and symbolic links go; other
// files (devices, fifos, sockets) are skipped and returned by name.
func WriteTar(ctx context.Context, snap, src string, w io.Writer) (skipped []string, err error) {
	tw := tar.NewWriter(w)
	base := filepath.Dir(src)
	if src == snap {
		base = snap
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(base, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			skipped = append(skipped, filepath.ToSlash(rel))
			return nil
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		// PAX keeps times to the nanosecond (USTAR: whole seconds).
		h.Uname, h.Gname, h.Format = "", "", tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		return err
	})
	if err != nil {
		return skipped, err
	}
	return skipped, tw.Close()
}

// ExtractTar extracts a tar stream from WriteTar into dir (checked with
// CheckRestoreDir's rules: absolute, missing or empty; made when missing)
// through an os.Root, so nothing lands outside dir: a name with "..", an
// absolute name, a path through a symbolic link leading out, an entry
// that exists already, and entries of other types are refused. Owners,
// modes and times are kept (owners where the agent may set them). It
// returns what it made, relative to dir, sorted as made, at most max
// (and whether there were more), and the stream's bytes.
func ExtractTar(ctx context.Context, r io.Reader, dir string, max int) (made []string, more bool, n int64, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, false, 0, err
	}
	defer root.Close()
	cr := &countReader{r: r}
	tr := tar.NewReader(cr)
	type dirMeta struct {
		name string
		h    *tar.Header
	}
	var dirs []dirMeta
	for {
		if err := ctx.Err(); err != nil {
			return made, more, cr.n, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return made, more, cr.n, fmt.Errorf("read the stream: %w", err)
		}
		name := path.Clean(h.Name)
		if !fs.ValidPath(name) || name == "." {
			return made, more, cr.n, fmt.Errorf("%w: the stream names %q, not a path inside %s", ErrRestoreInput, h.Name, dir)
		}
		mode := fs.FileMode(h.Mode).Perm() | fs.FileMode(h.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o700); err != nil {
				return made, more, cr.n, err
			}
			dirs = append(dirs, dirMeta{name, h})
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return made, more, cr.n, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = setMeta(root, name, h, mode)
			}
			if err != nil {
				return made, more, cr.n, err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return made, more, cr.n, err
			}
			if err := lchown(root, name, h); err != nil {
				return made, more, cr.n, err
			}
		default:
			return made, more, cr.n, fmt.Errorf("%w: the stream holds %s of type %q", ErrRestoreInput, name, h.Typeflag)
		}
		shown := name
		if h.Typeflag == tar.TypeDir {
			shown += "/"
		}
		if len(made) < max {
			made = append(made, shown)
		} else {
			more = true
		}
	}
	// Directories last, deepest first: their times are what they were
	// only once nothing more is made in them.
	for _, d := range slices.Backward(dirs) {
		mode := fs.FileMode(d.h.Mode).Perm() | fs.FileMode(d.h.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		if err := setMeta(root, d.name, d.h, mode); err != nil {
			return made, more, cr.n, err
		}
	}
	return made, more, cr.n, nil
}

// setMeta gives name (a file or directory in root) h's owner, mode and
// times. An owner the agent may not set is left as it is.
func setMeta(root *os.Root, name string, h *tar.Header, mode fs.FileMode) error {
	if err := lchown(root, name, h); err != nil {
		return err
	}
	if err := root.Chmod(name, mode); err != nil {
		return err
	}
	return root.Chtimes(name, h.AccessTime, h.ModTime)
}

// lchown sets name's owner to h's, unless the agent may not (not root).
func lchown(root *os.Root, name string, h *tar.Header) error {
	err := root.Lchown(name, h.Uid, h.Gid)
	if errors.Is(err, syscall.EPERM) {
		return nil
	}
	return err
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}
