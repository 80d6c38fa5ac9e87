package schema

// Activation says which appliance holds a replicated share's writable copy,
// and at which failover epoch. The replicated store keeps one per share that
// failed over (store.FailoverState.Activation); the zero Activation means
// the spec's appliance at epoch 0, as before any failover.
type Activation struct {
	// Appliance is the active appliance: the share's spec appliance or its
	// replication.to appliance. "" means the spec's appliance.
	Appliance string `json:"appliance"`
	// Epoch rises with every failover or switchover; 0 until the first.
	// Replication streams carry it, and a receiver refuses an older one.
	Epoch uint64 `json:"epoch"`
}

// Placement is where a share's copies are while an Activation holds: the
// answer to "which appliance is active for this share, and which is its
// replica", which the witness, the reconciler, the replication sender and
// receiver and the switchover all ask. Share.Place is the one place it is
// worked out.
type Placement struct {
	// Active holds the writable copy: the spec's appliance and pool, or
	// after a failover the replication target's. Its Pool is "" when the
	// activation names an appliance that holds no copy (see Share.Place).
	Active Target
	// Replica receives the share from Active: the other one of the spec's
	// appliance and the replication target. Zero for a share without
	// replication.
	Replica Target
	// Epoch is the activation's epoch.
	Epoch uint64
}

// Place returns where sh's copies are while a holds.
//
// ok is false when a names an appliance that holds no copy of sh: the spec
// changed the share's replica after a failover to the old one. Active is
// then that appliance (no pool) and Replica the spec's appliance, as the
// spec's appliance is the one copy the spec still names for certain.
func (sh *Share) Place(a Activation) (p Placement, ok bool) {
	home := Target{Appliance: sh.Appliance, Pool: sh.Pool}
	p.Epoch = a.Epoch
	switch {
	case a.Appliance == "" || a.Appliance == sh.Appliance:
		p.Active = home
		if sh.Replication != nil {
			p.Replica = sh.Replication.To
		}
		return p, true
	case sh.Replication != nil && a.Appliance == sh.Replication.To.Appliance:
		p.Active, p.Replica = sh.Replication.To, home
		return p, true
	default:
		p.Active, p.Replica = Target{Appliance: a.Appliance}, home
		return p, false
	}
}

// Holds says whether appliance holds a copy of sh: it is the share's spec
// appliance or its replication target.
func (sh *Share) Holds(appliance string) bool {
	return appliance == sh.Appliance || sh.Replication != nil && appliance == sh.Replication.To.Appliance
}
