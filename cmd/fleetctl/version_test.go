package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormatVersion(t *testing.T) {
	stamped := &debug.BuildInfo{
		Main: debug.Module{Version: "v0.0.0-20261129214900-ca6a33a23945+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "ca6a33a2394502701fff5dea48c3cd103c6f6aae"},
			{Key: "vcs.time", Value: "2026-11-29T21:49:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name, set string
		bi        *debug.BuildInfo
		want      string
	}{
		{"no build info", "", nil, "fleetctl devel"},
		{"go test or go run", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "fleetctl devel"},
		{"go install @version", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "fleetctl v1.2.0"},
		{"built in a checkout", "", stamped, "fleetctl v0.0.0-20261129214900-ca6a33a23945+dirty (revision ca6a33a23945, 2026-11-29, modified)"},
		{"-ldflags -X main.version", "v1.3.0", stamped, "fleetctl v1.3.0 (revision ca6a33a23945, 2026-11-29, modified)"},
	} {
		if got := formatVersion(tc.set, tc.bi); got != tc.want {
			t.Errorf("%s: formatVersion = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestVersionNamesTheRevision builds fleetctl the way an operator does,
// from a git checkout, with a version set by -ldflags, and checks that
// --version prints that version and the checkout's revision. It builds in
// a clone of this checkout's HEAD with the work tree's changes copied over
// (the go command does not stamp a git worktree, whose .git is a file),
// so it tests the code as it is now; then the revision is marked modified.
func TestVersionNamesTheRevision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	head, err := gitOut(root, "rev-parse", "HEAD")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI builds from a git checkout, but: %v", err)
		}
		t.Skipf("not a git checkout: %v", err)
	}
	status, err := gitOut(root, "status", "--porcelain")
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "fleetctl")
	if _, err := gitOut(root, "clone", "--quiet", "--no-checkout", root, clone); err != nil {
		t.Fatal(err)
	}
	if _, err := gitOut(clone, "checkout", "--quiet", head); err != nil {
		t.Fatal(err)
	}
	copyWorkTree(t, root, clone)

	bin := filepath.Join(t.TempDir(), "fleetctl")
	build := exec.Command("go", "build", "-buildvcs=true", "-ldflags=-X main.version=v9.8.7-test", "-o", bin, "./cmd/fleetctl")
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("fleetctl --version: %v\n%s", err, out)
	}
	want := `^fleetctl v9\.8\.7-test \(revision ` + head[:12] + `, \d{4}-\d\d-\d\d`
	if status != "" {
		want += `, modified\)\n$`
	} else {
		want += `\)\n$`
	}
	if !regexp.MustCompile(want).Match(out) {
		t.Fatalf("fleetctl --version printed %q, want a match for %q", out, want)
	}
}

// copyWorkTree makes dst's files what src's work tree has: changed and
// new files (not ignored ones) copied over, deleted ones removed.
func copyWorkTree(t *testing.T, src, dst string) {
	t.Helper()
	files, err := gitOut(src, "ls-files", "--cached", "--others", "--exclude-standard")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Split(files, "\n") {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, f))
		if os.IsNotExist(err) {
			_ = os.Remove(filepath.Join(dst, f))
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// gitOut runs git in dir and returns its output without the last newline.
func gitOut(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimRight(string(out), "\n"), nil
}
