package main

import (
	"fmt"
	"runtime/debug"
	"strings"
	"time"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// without it, --version reports the module version the go command
// stamped into the binary.
var version = ""

// versionString is what --version prints.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return formatVersion(version, bi)
}

// formatVersion says which fleetctl this is: the version set with
// -ldflags, else the module version from the build info, else "devel";
// then, when the binary was built from a checkout with VCS stamping
// (go build's default in a git work tree), the revision, its date and
// whether the work tree had changes:
//
//	fleetctl v0.0.0-20261129214900-ca6a33a1b2c3 (revision ca6a33a1b2c3, 2026-11-29, modified)
func formatVersion(set string, bi *debug.BuildInfo) string {
	v := set
	if v == "" && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "devel"
	}
	var details []string
	if bi != nil {
		vcs := map[string]string{}
		for _, s := range bi.Settings {
			vcs[s.Key] = s.Value
		}
		if rev := vcs["vcs.revision"]; rev != "" {
			details = append(details, "revision "+rev[:min(len(rev), 12)])
			if t, err := time.Parse(time.RFC3339, vcs["vcs.time"]); err == nil {
				details = append(details, t.UTC().Format(time.DateOnly))
			}
			if vcs["vcs.modified"] == "true" {
				details = append(details, "modified")
			}
		}
	}
	if len(details) == 0 {
		return "fleetctl " + v
	}
	return fmt.Sprintf("fleetctl %s (%s)", v, strings.Join(details, ", "))
}
