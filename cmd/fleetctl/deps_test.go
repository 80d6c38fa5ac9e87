package main

import (
	"os/exec"
	"strings"
	"testing"
)

// goList runs `go list -deps` on pkg and returns each package it lists
// with the packages it imports.
func goList(t *testing.T, pkg string) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		deps[f[0]] = f[1:]
	}
	return deps
}

const module = "github.com/fleetctl/fleetctl"

// TestBinaryHoldsNoTestCode: no fleetctl package in the binary imports
// testing (test doubles live in test-only packages). hashicorp/raft's own
// testing.go imports it upstream, which is why `go list -deps` still
// lists the package; that import is not ours to remove.
func TestBinaryHoldsNoTestCode(t *testing.T) {
	for pkg, imports := range goList(t, "./") {
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		for _, imp := range imports {
			if imp == "testing" || strings.HasSuffix(imp, "test") && strings.HasPrefix(imp, module) {
				t.Errorf("%s, built into fleetctl, imports %s", pkg, imp)
			}
		}
	}
}

// TestStoreStandsAlone: the package that implements raft.FSM depends on
// nothing of fleetctl but schema, so the log's format is its own.
func TestStoreStandsAlone(t *testing.T) {
	for pkg := range goList(t, module+"/store") {
		if strings.HasPrefix(pkg, module) && pkg != module+"/store" && pkg != module+"/schema" {
			t.Errorf("store depends on %s", pkg)
		}
	}
}
