package schema

import "time"

// The defaults, in one place. ApplyDefaults is the only code that fills them
// in; `fleetctl validate --show-defaults` prints a spec after it.
const (
	DefaultFleet           = "fleet"
	DefaultFailoverAfter   = Duration(30 * time.Second)
	DefaultFenceAfter      = Duration(15 * time.Second)
	DefaultDegradedLatency = Duration(250 * time.Millisecond)
	DefaultFailback        = FailbackManual
	DefaultRole            = RoleStorage
	DefaultState           = StatePresent
	DefaultKeepMin         = 1
)

// ApplyDefaults fills every field left out with its default. A share's
// failover defaults to manual when it is replicated and to off when it is not.
// It is idempotent.
func (s *Spec) ApplyDefaults() {
	if s.Fleet == "" {
		s.Fleet = DefaultFleet
	}
	w := &s.Witness
	if w.FailoverAfter == 0 {
		w.FailoverAfter = DefaultFailoverAfter
	}
	if w.FenceAfter == 0 {
		w.FenceAfter = DefaultFenceAfter
	}
	if w.DegradedLatency == 0 {
		w.DegradedLatency = DefaultDegradedLatency
	}
	if w.Failback == "" {
		w.Failback = DefaultFailback
	}
	for i := range s.Appliances {
		if s.Appliances[i].Role == "" {
			s.Appliances[i].Role = DefaultRole
		}
	}
	for i := range s.Shares {
		sh := &s.Shares[i]
		if sh.State == "" {
			sh.State = DefaultState
		}
		if sh.Snapshots != nil && sh.Snapshots.KeepMin == 0 {
			sh.Snapshots.KeepMin = DefaultKeepMin
		}
		if sh.Replication != nil && sh.Replication.KeepMin == 0 {
			sh.Replication.KeepMin = DefaultKeepMin
		}
		if sh.Failover == "" {
			if sh.Replication != nil {
				sh.Failover = FailoverManual
			} else {
				sh.Failover = FailoverOff
			}
		}
	}
}

// LeaseRenewal is how often a storage appliance's agent renews its lease
// with the leader. It is fixed, not part of the policy, and MinFenceAfter
// is what makes every accepted policy hold with it.
const LeaseRenewal = time.Second

// MinFenceAfter is the shortest fence_after validation accepts: three
// renewals, so that one renewal answered late (or lost) on a healthy fleet
// never lapses a lease and fences a share.
const MinFenceAfter = Duration(3 * LeaseRenewal)

// FenceMargin is how much shorter than failover_after the fence deadline must
// be: max(5s, failover_after/4). The margin absorbs clock-rate drift between
// the appliance and the leader and the time it takes to make shares read-only,
// so a cut-off appliance is always read-only before its replica is promoted.
func FenceMargin(failoverAfter Duration) Duration {
	return max(Duration(5*time.Second), failoverAfter/4)
}
