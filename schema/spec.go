// Package schema defines fleet.yaml, the desired state of a fleet of btrfs
// appliances, and is the one place that decides what a valid spec is.
//
// Parse decodes a file strictly (unknown fields are errors, every error carries
// FILE:LINE:COL and a field path), applies the defaults (ApplyDefaults is the
// only place they live) and validates the whole spec, reporting every problem
// at once. JSONSchema describes the same format for editors.
package schema

// Version is the fleet.yaml format version this package reads and writes.
const Version = 1

// Spec is the whole desired state of a fleet: which appliances it has, which
// shares live where, and how the witness quorum treats an appliance that stops
// answering.
type Spec struct {
	// Version of the fleet.yaml format. This fleetctl reads version 1.
	Version int `yaml:"version" schema:"required"`
	// Fleet is the fleet's name. It names the cluster's certificate authority;
	// lowercase letters, digits and '-'. Default "fleet".
	Fleet string `yaml:"fleet,omitempty"`
	// Witness is the policy the Raft quorum applies when an appliance stops
	// renewing its lease: when it fences itself and when its shares fail over.
	Witness Witness `yaml:"witness"`
	// Appliances are the machines of the fleet, storage appliances with btrfs
	// pools and witness appliances that only vote.
	Appliances []Appliance `yaml:"appliances" schema:"required"`
	// Shares are the btrfs subvolumes the fleet keeps, each on one appliance's
	// pool, with optional snapshots and replication.
	Shares []Share `yaml:"shares,omitempty"`

	// pos maps a field path (as in Error.Path) to where its value was written;
	// nil for specs built in code.
	pos map[string]Pos
	// file is the name errors are reported against.
	file string
}

// Witness is the failover policy. The Raft quorum is the witness: an
// appliance that has not renewed its lease with the leader for FenceAfter makes
// its shares read-only; the leader fails its shares over once it has heard
// nothing for FailoverAfter, which must be safely longer.
type Witness struct {
	// FailoverAfter is how long an appliance may go without renewing its lease
	// before the quorum fails its shares over to their replicas. Default 30s.
	FailoverAfter Duration `yaml:"failover_after,omitempty"`
	// FenceAfter is how long an appliance cut off from the quorum keeps its
	// shares writable before it makes them read-only itself. It must be shorter
	// than failover_after by at least max(5s, failover_after/4). Default 15s.
	FenceAfter Duration `yaml:"fence_after,omitempty"`
	// DegradedLatency is the round-trip time above which a member is reported
	// as degraded. Default 250ms.
	DegradedLatency Duration `yaml:"degraded_latency,omitempty"`
	// Failback says whether a share returns to its original appliance once that
	// appliance is back and caught up: manual or auto. Default manual.
	Failback Failback `yaml:"failback,omitempty"`
}

// Appliance is one machine of the fleet, running one fleetctl agent.
type Appliance struct {
	// Name identifies the appliance; it is bound into its TLS certificate.
	// Lowercase letters, digits and '-', at most 63 characters.
	Name string `yaml:"name" schema:"required"`
	// Address is the host:port where the appliance's agent listens.
	Address string `yaml:"address" schema:"required"`
	// Role is storage (holds pools and shares) or witness (votes in the quorum,
	// holds no data). Default storage.
	Role Role `yaml:"role,omitempty"`
	// Pools are the btrfs filesystems of a storage appliance.
	Pools []Pool `yaml:"pools,omitempty"`
}

// Pool is a mounted btrfs filesystem on an appliance.
type Pool struct {
	// Name identifies the pool within its appliance.
	Name string `yaml:"name" schema:"required"`
	// Path is the absolute mount path of the btrfs filesystem.
	Path string `yaml:"path" schema:"required"`
}

// Share is a btrfs subvolume the fleet keeps on one appliance's pool.
type Share struct {
	// Name identifies the share in the fleet and names its subvolume: letters,
	// digits, '.', '_' and '-', starting with a letter or digit.
	Name string `yaml:"name" schema:"required"`
	// Appliance is the storage appliance that holds the share.
	Appliance string `yaml:"appliance" schema:"required"`
	// Pool is the pool of that appliance the share lives in.
	Pool string `yaml:"pool" schema:"required"`
	// Quota limits the share's size, like 200GiB (binary) or 500GB (decimal).
	// No quota when omitted.
	Quota Quota `yaml:"quota,omitempty"`
	// State is present (the share exists) or absent (the share is deleted).
	// Removing a share from the file never deletes it; absent does. Default
	// present.
	State State `yaml:"state,omitempty"`
	// Snapshots takes read-only snapshots of the share on its own pool.
	Snapshots *Snapshots `yaml:"snapshots,omitempty"`
	// Replication sends the share to another appliance's pool on a schedule.
	Replication *Replication `yaml:"replication,omitempty"`
	// Failover is what the quorum does when the share's appliance is gone:
	// auto (fail over to the replica), manual (report only) or off. Needs
	// replication. Default manual with replication, off without.
	Failover Failover `yaml:"failover,omitempty"`
}

// Snapshots is a local snapshot schedule and its retention.
type Snapshots struct {
	// Schedule says when to snapshot: "every 1h" or a 5-field cron line.
	Schedule Schedule `yaml:"schedule" schema:"required"`
	// Retention says which snapshots to keep, btrbk style: "24h 7d 4w 12m"
	// keeps hourly ones for 24 hours, dailies for 7 days, weeklies for 4
	// weeks and monthlies for 12 months.
	Retention Retention `yaml:"retention" schema:"required"`
	// KeepMin is the number of newest snapshots always kept, whatever the
	// retention says. At least 1; 0 means the default, 1.
	KeepMin int `yaml:"keep_min,omitempty"`
}

// Replication sends a share to another appliance's pool with btrfs send and
// receive: a full send the first time, incremental after.
type Replication struct {
	// To is the target as appliance/pool, like nas2/tank.
	To Target `yaml:"to" schema:"required"`
	// Schedule says when to replicate: "every 10m" or a 5-field cron line.
	Schedule Schedule `yaml:"schedule" schema:"required"`
	// Retention says which received snapshots the target keeps, btrbk style.
	Retention Retention `yaml:"retention" schema:"required"`
	// KeepMin is the number of newest received snapshots always kept on the
	// target. At least 1; 0 means the default, 1.
	KeepMin int `yaml:"keep_min,omitempty"`
	// Compression of the stream between the appliances: none or zstd. None
	// when omitted.
	Compression Compression `yaml:"compression,omitempty"`
	// BandwidthLimit caps the stream's rate on the wire (after
	// compression), like 50MiB/s or 100MB/s. No limit when omitted.
	BandwidthLimit Rate `yaml:"bandwidth_limit,omitempty"`
}

// Appliance returns the appliance named name, or nil.
func (s *Spec) Appliance(name string) *Appliance {
	for i := range s.Appliances {
		if s.Appliances[i].Name == name {
			return &s.Appliances[i]
		}
	}
	return nil
}

// Pool returns the appliance's pool named name, or nil.
func (a *Appliance) Pool(name string) *Pool {
	for i := range a.Pools {
		if a.Pools[i].Name == name {
			return &a.Pools[i]
		}
	}
	return nil
}

// Share returns the share named name, or nil.
func (s *Spec) Share(name string) *Share {
	for i := range s.Shares {
		if s.Shares[i].Name == name {
			return &s.Shares[i]
		}
	}
	return nil
}
