package schema

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

var (
	// applianceNameRE: appliance and fleet names go into TLS certificates
	// and host-like places, so they follow DNS label rules.
	applianceNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// shareNameRE: share and pool names become subvolume and directory names,
	// so no '/', no leading '.' or '-', nothing a shell or btrfs would trip on.
	shareNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// MinVotersForAutoFailover is the fewest appliances a fleet with automatic
// failover needs: with two, losing one loses the quorum that would decide
// the failover.
const MinVotersForAutoFailover = 3

// validator collects the problems of a decoded spec.
type validator struct {
	s      *Spec
	failed map[string]bool
	errs   Errors
}

// Validate checks a spec built in code or decoded by Parse, with defaults
// applied, and returns every problem (nil when there are none). Positions are
// known only for specs that came from Parse.
func (s *Spec) Validate() error {
	if errs := s.validate(nil); len(errs) > 0 {
		errs.sort()
		return errs
	}
	return nil
}

// validate checks the decoded spec; paths in failed could not be decoded and
// have already been reported.
func (s *Spec) validate(failed map[string]bool) Errors {
	v := &validator{s: s, failed: failed}
	v.spec()
	return v.errs
}

// at returns where path, or the nearest enclosing value, was written.
func (v *validator) at(path string) Pos {
	for {
		if p, ok := v.s.pos[path]; ok {
			return p
		}
		if path == "" {
			return Pos{}
		}
		if i := strings.LastIndexAny(path, ".["); i >= 0 {
			path = path[:i]
		} else {
			path = ""
		}
	}
}

// written reports whether path was set in the file (as opposed to defaulted).
func (v *validator) written(path string) bool {
	_, ok := v.s.pos[path]
	return ok
}

// reported reports whether path, or a value enclosing it, could not be
// decoded and so has already been reported by the decoder.
func (v *validator) reported(path string) bool {
	for {
		if v.failed[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return false
		}
		path = path[:i]
	}
}

func (v *validator) errorf(path, format string, args ...any) {
	if v.reported(path) {
		return // already reported by the decoder
	}
	p := v.at(path)
	v.errs = append(v.errs, &Error{File: v.s.file, Line: p.Line, Column: p.Column, Path: path, Message: fmt.Sprintf(format, args...)})
}

// missing reports a required field left out, at its parent's position.
func (v *validator) missing(path string) {
	if v.reported(path) {
		return
	}
	parent := path[:max(strings.LastIndexByte(path, '.'), 0)]
	p := v.at(parent)
	v.errs = append(v.errs, &Error{File: v.s.file, Line: p.Line, Column: p.Column, Path: path, Message: "missing; this field is required"})
}

func (v *validator) spec() {
	s := v.s
	switch {
	case s.Version == 0 && !v.written("version"):
		v.missing("version")
	case s.Version != Version:
		v.errorf("version", "version %d is not supported; this fleetctl reads version %d", s.Version, Version)
	}
	if !applianceNameRE.MatchString(s.Fleet) {
		v.errorf("fleet", "%q is not a valid fleet name: lowercase letters, digits and '-', at most 63", s.Fleet)
	}
	v.witness()
	v.appliances()
	v.shares()
}

// ValidName says whether s may name a fleet or an appliance: a DNS label
// (lowercase letters, digits and '-', at most 63), because names go into
// TLS certificates. The one copy of the rule: the agent's join and the
// certificate authority use it too.
func ValidName(s string) bool { return applianceNameRE.MatchString(s) }

func (v *validator) witness() {
	w := v.s.Witness
	if margin := FenceMargin(w.FailoverAfter); w.FailoverAfter <= margin {
		v.errorf("witness.failover_after", "failover_after %v leaves no room for fence_after, which must be shorter by at least %v (max(5s, failover_after/4)); make failover_after longer than %v",
			w.FailoverAfter, margin, margin)
	} else if w.FenceAfter > w.FailoverAfter-margin {
		v.errorf("witness.fence_after", "fence_after %v must be shorter than failover_after %v by at least %v (max(5s, failover_after/4)), so a cut-off appliance is read-only before its replica is promoted; use at most %v",
			w.FenceAfter, w.FailoverAfter, margin, w.FailoverAfter-margin)
	}
	if w.FenceAfter < MinFenceAfter {
		v.errorf("witness.fence_after", "fence_after %v is shorter than %v, three lease renewals (one every %v): a renewal answered a little late would fence a share on a healthy fleet; use at least %v",
			w.FenceAfter, MinFenceAfter, LeaseRenewal, MinFenceAfter)
	}
	if w.DegradedLatency >= w.FenceAfter {
		v.errorf("witness.degraded_latency", "degraded_latency %v must be shorter than fence_after %v", w.DegradedLatency, w.FenceAfter)
	}
}

func (v *validator) appliances() {
	s := v.s
	if len(s.Appliances) == 0 {
		if v.written("appliances") {
			v.errorf("appliances", "a fleet needs at least one appliance")
		} else {
			v.missing("appliances")
		}
		return
	}
	names := map[string]string{}
	addrs := map[string]string{}
	for i, a := range s.Appliances {
		p := fmt.Sprintf("appliances[%d]", i)
		switch {
		case a.Name == "":
			v.missing(p + ".name")
		case !applianceNameRE.MatchString(a.Name):
			v.errorf(p+".name", "%q is not a valid appliance name: lowercase letters, digits and '-', at most 63, not starting or ending with '-'", a.Name)
		case names[a.Name] != "":
			v.errorf(p+".name", "appliance %q is already defined at %s", a.Name, names[a.Name])
		default:
			names[a.Name] = p
		}
		if a.Address == "" {
			v.missing(p + ".address")
		} else if err := checkAddress(a.Address); err != nil {
			v.errorf(p+".address", "%v", err)
		} else if other, dup := addrs[a.Address]; dup {
			v.errorf(p+".address", "address %s is already used by %s", a.Address, other)
		} else {
			addrs[a.Address] = p
		}
		if a.Role == RoleWitness && len(a.Pools) > 0 {
			v.errorf(p+".pools", "a witness appliance holds no data; remove its pools or make it role: storage")
		}
		v.pools(p, a)
	}
}

func (v *validator) pools(ap string, a Appliance) {
	names := map[string]string{}
	paths := map[string]string{}
	for j, pool := range a.Pools {
		p := fmt.Sprintf("%s.pools[%d]", ap, j)
		switch {
		case pool.Name == "":
			v.missing(p + ".name")
		case !shareNameRE.MatchString(pool.Name):
			v.errorf(p+".name", "%q is not a valid pool name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64", pool.Name)
		case names[pool.Name] != "":
			v.errorf(p+".name", "pool %q is already defined on appliance %q at %s", pool.Name, a.Name, names[pool.Name])
		default:
			names[pool.Name] = p
		}
		switch {
		case pool.Path == "":
			v.missing(p + ".path")
		case !filepath.IsAbs(pool.Path):
			v.errorf(p+".path", "%q is not an absolute path; write the mount point, like /mnt/tank", pool.Path)
		case filepath.Clean(pool.Path) != pool.Path:
			v.errorf(p+".path", "%q is not a clean path; write %q", pool.Path, filepath.Clean(pool.Path))
		case pool.Path == "/":
			v.errorf(p+".path", "the root directory cannot be a pool; mount the btrfs filesystem somewhere like /mnt/tank")
		case paths[pool.Path] != "":
			v.errorf(p+".path", "path %s is already the pool at %s", pool.Path, paths[pool.Path])
		default:
			paths[pool.Path] = p
		}
	}
}

// checkAddress accepts host:port with a port from 1 to 65535.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port, like nas1.example.net:7400", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host; write the address other appliances reach it at, like nas1.example.net:7400", addr)
	}
	if strings.ContainsFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("%q: the host may not contain spaces or control characters", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// storagePool looks up appliance/pool for a reference at path and reports
// what is wrong with it. It returns false when the reference is bad.
func (v *validator) storagePool(path, appliance, pool, poolPath string) bool {
	a := v.s.Appliance(appliance)
	if a == nil {
		v.errorf(path, "appliance %q is not defined", appliance)
		return false
	}
	if a.Role == RoleWitness {
		v.errorf(path, "appliance %q is a witness and holds no data", appliance)
		return false
	}
	if pool == "" {
		return false
	}
	if a.Pool(pool) == nil {
		var have []string
		for _, p := range a.Pools {
			have = append(have, p.Name)
		}
		hint := "it has no pools"
		if len(have) > 0 {
			hint = "it has " + strings.Join(have, ", ")
		}
		v.errorf(poolPath, "appliance %q has no pool %q (%s)", appliance, pool, hint)
		return false
	}
	return true
}

func (v *validator) shares() {
	s := v.s
	names := map[string]string{}
	autoFailover := ""
	for i, sh := range s.Shares {
		p := fmt.Sprintf("shares[%d]", i)
		switch {
		case sh.Name == "":
			v.missing(p + ".name")
		case !shareNameRE.MatchString(sh.Name):
			v.errorf(p+".name", "%q is not a valid share name (it names a subvolume): letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64", sh.Name)
		case names[sh.Name] != "":
			v.errorf(p+".name", "share %q is already defined at %s", sh.Name, names[sh.Name])
		default:
			names[sh.Name] = p
		}
		switch {
		case sh.Appliance == "":
			v.missing(p + ".appliance")
		case sh.Pool == "":
			v.missing(p + ".pool")
			v.storagePool(p+".appliance", sh.Appliance, "", "")
		default:
			v.storagePool(p+".appliance", sh.Appliance, sh.Pool, p+".pool")
		}
		if sn := sh.Snapshots; sn != nil {
			v.schedule(p+".snapshots", sn.Schedule, sn.Retention, sn.KeepMin)
		}
		if r := sh.Replication; r != nil {
			rp := p + ".replication"
			switch {
			case r.To.Appliance == "":
				v.missing(rp + ".to")
			case r.To.Appliance == sh.Appliance && r.To.Pool == sh.Pool:
				v.errorf(rp+".to", "replication to the share's own pool %s protects nothing; name another appliance's pool", r.To)
			case r.To.Appliance == sh.Appliance && sh.Failover == FailoverAuto:
				v.errorf(rp+".to", "failover: auto needs the replica on another appliance, not on %q itself", sh.Appliance)
			default:
				v.storagePool(rp+".to", r.To.Appliance, r.To.Pool, rp+".to")
			}
			v.schedule(rp, r.Schedule, r.Retention, r.KeepMin)
		} else if v.written(p+".failover") && sh.Failover != FailoverOff {
			v.errorf(p+".failover", "failover: %s needs replication; add replication: or write failover: off", sh.Failover)
		}
		if sh.Failover == FailoverAuto && autoFailover == "" {
			autoFailover = p + ".failover"
		}
	}
	if autoFailover != "" && len(s.Appliances) < MinVotersForAutoFailover {
		v.errorf(autoFailover, "failover: auto needs at least %d appliances so a quorum survives losing one; the fleet has %d (add a witness appliance)", MinVotersForAutoFailover, len(s.Appliances))
	}
}

func (v *validator) schedule(path string, sc Schedule, r Retention, keepMin int) {
	if sc.IsZero() {
		v.missing(path + ".schedule")
	}
	if r.IsZero() {
		v.missing(path + ".retention")
	}
	if keepMin < 0 {
		v.errorf(path+".keep_min", "keep_min %d must be at least 1 (0 or left out means 1)", keepMin)
	}
}

// ValidShareName says whether s may name a share (or a pool): it names a
// subvolume or a directory.
func ValidShareName(s string) bool { return shareNameRE.MatchString(s) }
