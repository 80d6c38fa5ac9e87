package pki

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadFileRefusesMoreThanTheLimit(t *testing.T) {
	dir := t.TempDir()
	exact := filepath.Join(dir, "exact.pem")
	over := filepath.Join(dir, "over.pem")
	if err := os.WriteFile(exact, bytes.Repeat([]byte("a"), MaxFileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(over, bytes.Repeat([]byte("a"), MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(exact); err != nil || len(b) != MaxFileSize {
		t.Fatalf("ReadFile of a file of exactly %d bytes: want all of it, got %d bytes, %v", MaxFileSize, len(b), err)
	}
	for _, path := range []string{over, "/dev/zero"} {
		start := time.Now()
		b, err := ReadFile(path)
		if !errors.Is(err, ErrFileTooLarge) || !strings.Contains(err.Error(), path) {
			t.Fatalf("ReadFile(%s): want an error naming the file that wraps ErrFileTooLarge, got %d bytes, %v", path, len(b), err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("ReadFile(%s) took %v to refuse it", path, d)
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadFile of a missing file: want an error wrapping os.ErrNotExist, got %v", err)
	}
}
