package schema

import (
	"fmt"
	"strings"
	"time"
)

// The kinds of Hazard. The first five are approved by name (KIND:NAME) or
// by "all"; a fleet rename and a file that drops every appliance need
// flags of their own, which "all" does not give, since both mean the file
// is most likely another fleet's.
const (
	HazardDelete  = "delete"  // a share goes to state: absent: its subvolume is deleted
	HazardMove    = "move"    // a share moves to another appliance or pool
	HazardRemove  = "remove"  // an appliance that holds shares leaves the spec
	HazardQuota   = "quota"   // a quota below what the share holds now
	HazardWitness = "witness" // a lower failover_after or fence_after that acts at once
	// HazardRenameFleet: the file's fleet: differs from the stored spec's
	// (or, before any spec is stored, from the CA's). Approval.RenameFleet.
	HazardRenameFleet = "rename-fleet"
	// HazardReplaceAppliances: the file names none of the stored spec's
	// appliances. Approval.ReplaceAppliances.
	HazardReplaceAppliances = "replace-appliances"
)

// ApproveAll approves every hazard approved by name.
const ApproveAll = "all"

// Hazard is one change a spec would make that loses data, may lose it, or
// acts at once on the fleet: it is stored only when approved.
type Hazard struct {
	// Kind is one of the Hazard* constants.
	Kind string `json:"kind"`
	// Name names what it is about: the share, the appliance, the witness
	// field (failover_after, fence_after), the file's fleet name; empty
	// for replace-appliances.
	Name string `json:"name"`
	// Reason says what would happen, one sentence.
	Reason string `json:"reason"`
}

// Key is what approves h by name: "delete:old-vms".
func (h Hazard) Key() string { return h.Kind + ":" + h.Name }

// byName says whether h is approved by its Key (or "all").
func (h Hazard) byName() bool {
	return h.Kind != HazardRenameFleet && h.Kind != HazardReplaceAppliances
}

// Approval is what an apply approves of the hazards of its spec.
type Approval struct {
	// Approve lists hazards approved by Key ("delete:old-vms",
	// "quota:projects", "witness:failover_after"), or "all" for every one
	// of the kinds delete, move, remove, quota and witness.
	Approve []string `json:"approve,omitempty"`
	// RenameFleet lets the file's fleet name differ from the stored one.
	RenameFleet bool `json:"rename_fleet,omitempty"`
	// ReplaceAppliances lets the file drop every appliance of the stored
	// spec.
	ReplaceAppliances bool `json:"replace_appliances,omitempty"`
}

// Check says what is wrong with an approval's keys: each must be "all" or
// KIND:NAME with a kind approved by name.
func (a Approval) Check() error {
	for _, k := range a.Approve {
		if k == ApproveAll {
			continue
		}
		kind, name, ok := strings.Cut(k, ":")
		switch {
		case !ok || name == "":
			return fmt.Errorf("approval %q: write KIND:NAME (delete:SHARE, move:SHARE, remove:APPLIANCE, quota:SHARE, witness:failover_after, witness:fence_after) or all", k)
		case !(Hazard{Kind: kind}).byName():
			return fmt.Errorf("approval %q: %s has a flag of its own (rename_fleet, replace_appliances), which all does not give", k, kind)
		case kind != HazardDelete && kind != HazardMove && kind != HazardRemove && kind != HazardQuota && kind != HazardWitness:
			return fmt.Errorf("approval %q: unknown kind %q; the kinds are delete, move, remove, quota and witness", k, kind)
		}
	}
	return nil
}

// Approves says whether a approves h.
func (a Approval) Approves(h Hazard) bool {
	switch h.Kind {
	case HazardRenameFleet:
		return a.RenameFleet
	case HazardReplaceAppliances:
		return a.ReplaceAppliances
	}
	for _, k := range a.Approve {
		if k == ApproveAll || k == h.Key() {
			return true
		}
	}
	return false
}

// Unapproved returns the hazards a does not approve, in order.
func (a Approval) Unapproved(hs []Hazard) []Hazard {
	var out []Hazard
	for _, h := range hs {
		if !a.Approves(h) {
			out = append(out, h)
		}
	}
	return out
}

// ApprovalFor is the approval that approves exactly hs, each by name.
func ApprovalFor(hs []Hazard) Approval {
	var a Approval
	for _, h := range hs {
		switch h.Kind {
		case HazardRenameFleet:
			a.RenameFleet = true
		case HazardReplaceAppliances:
			a.ReplaceAppliances = true
		default:
			a.Approve = append(a.Approve, h.Key())
		}
	}
	return a
}

// Flags are the fleetctl apply flags that give a, separated by spaces.
func (a Approval) Flags() string {
	var flags []string
	if len(a.Approve) > 0 {
		flags = append(flags, "--approve="+strings.Join(a.Approve, ","))
	}
	if a.RenameFleet {
		flags = append(flags, "--rename-fleet")
	}
	if a.ReplaceAppliances {
		flags = append(flags, "--replace-appliances")
	}
	return strings.Join(flags, " ")
}

// Facts is what the fleet knows now that decides whether a change acts on
// data: what the appliances last reported and the leader's leases.
type Facts struct {
	// CAFleet is the fleet the CA was made for; a first spec must carry
	// this name. Empty: not checked.
	CAFleet string
	// Used is the bytes each share refers to now, as its active appliance
	// last reported (the largest report when several do).
	Used map[string]uint64
	// Silent is how long each storage appliance has gone without a lease
	// renewal the leader counted; appliances not in it are not checked.
	Silent map[string]time.Duration
}

// Hazards lists what storing new over old (nil when no spec is stored yet)
// would do that needs approval; both have their defaults applied. It is
// the one rule: the leader refuses an apply with an unapproved hazard, and
// the CLI asks about the same list. A change counts only once: a file that
// repeats the stored spec has no hazards.
//
//   - delete: a share whose state becomes absent (or that is new with
//     state: absent: it deletes a subvolume of that name if one exists);
//   - move: a present share whose appliance or pool changes;
//   - remove: an appliance of old that new drops while old has a present
//     share on it or replicated to it;
//   - quota: a changed quota below the bytes the share refers to now;
//   - witness: failover_after (fence_after) lowered to at most how long
//     a storage appliance of old has been silent, when the old value had
//     not been reached: its shares would fail over (be fenced) at once;
//   - rename-fleet: new.Fleet differs from old.Fleet, or with no old from
//     f.CAFleet;
//   - replace-appliances: old has appliances and new names none of them.
func Hazards(old, new *Spec, f Facts) []Hazard {
	var hs []Hazard
	add := func(kind, name, format string, args ...any) {
		hs = append(hs, Hazard{Kind: kind, Name: name, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case old != nil && new.Fleet != old.Fleet:
		add(HazardRenameFleet, new.Fleet, "the file is for fleet %q, the stored spec is fleet %q: is it the right file?", new.Fleet, old.Fleet)
	case old == nil && f.CAFleet != "" && new.Fleet != f.CAFleet:
		add(HazardRenameFleet, new.Fleet, "the file is for fleet %q, this fleet's CA was made for %q: is it the right file?", new.Fleet, f.CAFleet)
	}
	if old != nil && len(old.Appliances) > 0 {
		kept := false
		for _, a := range old.Appliances {
			if new.Appliance(a.Name) != nil {
				kept = true
				break
			}
		}
		if !kept {
			add(HazardReplaceAppliances, "", "the file names none of the fleet's %d appliances (%s): every one would leave the fleet", len(old.Appliances), applianceNames(old))
		}
	}

	for i := range new.Shares {
		s := &new.Shares[i]
		var o *Share
		if old != nil {
			o = old.Share(s.Name)
		}
		if s.State == StateAbsent {
			switch {
			case o == nil:
				add(HazardDelete, s.Name, "share %s is new with state: absent: a subvolume %s on %s/%s is DELETED if it exists", s.Name, s.Name, s.Appliance, s.Pool)
			case o.State != StateAbsent:
				add(HazardDelete, s.Name, "share %s goes to state: absent: it is DELETED on %s/%s (its snapshots are kept)", s.Name, o.Appliance, o.Pool)
			}
			continue
		}
		if o == nil || o.State == StateAbsent {
			continue
		}
		if o.Appliance != s.Appliance || o.Pool != s.Pool {
			add(HazardMove, s.Name, "share %s moves from %s/%s to %s/%s: an empty share is made there; the data stays behind on %s/%s, orphaned", s.Name, o.Appliance, o.Pool, s.Appliance, s.Pool, o.Appliance, o.Pool)
		}
		if used, ok := f.Used[s.Name]; ok && s.Quota != 0 && s.Quota != o.Quota && uint64(s.Quota) < used {
			add(HazardQuota, s.Name, "share %s's quota %s is below the %s it holds now: every write to it fails until data is deleted", s.Name, s.Quota, humanBytes(used))
		}
	}

	if old != nil {
		for _, a := range old.Appliances {
			if new.Appliance(a.Name) != nil {
				continue
			}
			var held []string
			for _, s := range old.Shares {
				if s.State != StateAbsent && (s.Appliance == a.Name || (s.Replication != nil && s.Replication.To.Appliance == a.Name)) {
					held = append(held, s.Name)
				}
			}
			if len(held) > 0 {
				add(HazardRemove, a.Name, "appliance %s leaves the fleet holding %s (%s): the fleet no longer keeps, snapshots or replicates them", a.Name, plural(len(held), "share"), strings.Join(held, ", "))
			}
		}

		witness := func(field string, was, now Duration, acts string) {
			if now >= was {
				return
			}
			var hit []string
			for _, a := range old.Appliances {
				silent, ok := f.Silent[a.Name]
				if a.Role != RoleWitness && ok && silent >= time.Duration(now) && silent < time.Duration(was) {
					hit = append(hit, fmt.Sprintf("%s (silent %s)", a.Name, silent.Round(time.Second)))
				}
			}
			if len(hit) > 0 {
				add(HazardWitness, field, "%s %s → %s: %s at once for %s", field, was, now, acts, strings.Join(hit, ", "))
			}
		}
		witness("failover_after", old.Witness.FailoverAfter, new.Witness.FailoverAfter, "shares with failover: auto fail over")
		witness("fence_after", old.Witness.FenceAfter, new.Witness.FenceAfter, "shares are made read-only")
	}
	return hs
}

func applianceNames(s *Spec) string {
	var names []string
	for _, a := range s.Appliances {
		names = append(names, a.Name)
	}
	return strings.Join(names, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// humanBytes writes a byte count in binary units with one decimal: 3.2GiB.
func humanBytes(b uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(b), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", b)
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
