package pki

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// MaxFileSize is the most ReadFile reads. A credential bundle is a few
// kilobytes; a megabyte leaves room for any certificate chain and is
// still nothing to hold in memory.
const MaxFileSize = 1 << 20

// ErrFileTooLarge says a file is larger than MaxFileSize, so it is not a
// credential, key, certificate or token file.
var ErrFileTooLarge = errors.New("larger than 1 MiB: not a credential, key, certificate or token file")

// ReadFile reads a credential, key, certificate, token or identity file,
// at most MaxFileSize bytes of it: a path that names /dev/zero or a huge
// file by mistake is refused at once, naming the file, rather than read
// into memory until the process dies. Every such read in fleetctl goes
// through it. A missing file gives an error that wraps os.ErrNotExist.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", path, ErrFileTooLarge)
	}
	return b, nil
}

// WriteFile writes a secret file (a credential bundle, a key, the join
// token, the CA key): to a temporary file beside path, mode 0600, then
// renamed over path. So the file ends 0600 whatever was at path before
// (an existing 0644 file keeps its mode under os.WriteFile), and a crash
// never leaves half a credential. A symbolic link at path is replaced, not
// followed.
func WriteFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // once renamed, there is nothing to remove
	if err := writeAndClose(f, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeAndClose(f *os.File, data []byte) error {
	err := f.Chmod(0o600) // CreateTemp's mode already, whatever the umask
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
