package pki

import (
	"errors"
	"fmt"
	"io"
	"os"
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
