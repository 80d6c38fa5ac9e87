package reconcile

import (
	"context"
	"fmt"

	"github.com/fleetctl/fleetctl/schema"
)

// Observe asks the driver what each pool of the appliance holds: whether it
// is a mounted btrfs filesystem, its subvolumes, whether quotas are enabled
// and, if they are, its qgroups. It is the I/O half of planning; Plan is the
// pure half. A pool that cannot be observed gets Err and is not planned for.
func Observe(ctx context.Context, d Driver, spec *schema.Spec, appliance string) Observed {
	obs := Observed{Pools: map[string]PoolObservation{}}
	if spec == nil {
		return obs
	}
	a := spec.Appliance(appliance)
	if a == nil {
		return obs
	}
	for _, p := range a.Pools {
		obs.Pools[p.Name] = observePool(ctx, d, p)
	}
	return obs
}

func observePool(ctx context.Context, d Driver, p schema.Pool) PoolObservation {
	po := PoolObservation{Path: p.Path}
	fail := func(err error) PoolObservation {
		return PoolObservation{Path: p.Path, Err: err.Error()}
	}
	ok, err := d.IsBtrfs(ctx, p.Path)
	if err != nil {
		return fail(err)
	}
	if !ok {
		return fail(fmt.Errorf("%s is not a mounted btrfs filesystem; mount it, or fix pool %s's path in the spec", p.Path, p.Name))
	}
	if po.Subvolumes, err = d.Subvolumes(ctx, p.Path); err != nil {
		return fail(err)
	}
	if po.QuotaEnabled, err = d.QuotaEnabled(ctx, p.Path); err != nil {
		return fail(err)
	}
	if po.QuotaEnabled {
		if po.Qgroups, err = d.Qgroups(ctx, p.Path); err != nil {
			return fail(err)
		}
	}
	return po
}
