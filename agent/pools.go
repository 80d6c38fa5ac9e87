package agent

import (
	"context"
	"net/http"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
)

// This file serves the space of the storage appliances' pools (GET
// /v1/pools): any agent asks each storage appliance, which answers for
// its own pools in the stored spec (GET /v1/pools/local) with statfs.
// Read live, not reported through Raft: free space changes all the time,
// and writing it to the log would grow it for nothing.

// poolsTimeout bounds the whole fleet-wide ask.
const poolsTimeout = 10 * time.Second

func (n *Node) handlePools(w http.ResponseWriter, r *http.Request) {
	spec := n.fsm.State().Spec
	resp := client.PoolsResponse{Pools: []client.PoolSpace{}}
	if spec == nil {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	storage := storageNames(spec, "")
	ctx, cancel := context.WithTimeout(r.Context(), poolsTimeout)
	defer cancel()
	answers := askStorage(n, storage,
		func() []client.PoolSpace { return n.localPools(ctx, spec) },
		func(name, addr string) []client.PoolSpace { return n.remotePools(ctx, name, addr) },
		func(name, why string) []client.PoolSpace { return []client.PoolSpace{{Appliance: name, Error: why}} })
	for i, a := range answers {
		for _, p := range a {
			p.Appliance = storage[i]
			if p.Pool == "" {
				resp.Errors = append(resp.Errors, client.ApplianceError{Appliance: storage[i], Error: p.Error})
				continue
			}
			resp.Pools = append(resp.Pools, p)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (n *Node) handlePoolsLocal(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.localPools(r.Context(), n.fsm.State().Spec))
}

// localPools is the space of this appliance's pools in spec; a pool that
// is not a mounted btrfs filesystem carries the error instead.
func (n *Node) localPools(ctx context.Context, spec *schema.Spec) []client.PoolSpace {
	a, err := n.ownAppliance(spec)
	if err != nil {
		return []client.PoolSpace{{Appliance: n.cfg.Name, Error: err.Error()}}
	}
	out := []client.PoolSpace{}
	for _, p := range a.Pools {
		ps := client.PoolSpace{Appliance: n.cfg.Name, Pool: p.Name, Path: p.Path}
		err := reconcile.CheckPoolMounted(ctx, n.cfg.Driver, p.Path)
		var sp reconcile.PoolSpace
		if err == nil {
			sp, err = reconcile.StatPool(p.Path)
		}
		if err != nil {
			ps.Error = err.Error()
		}
		ps.Size, ps.Used, ps.Free = sp.Size, sp.Used, sp.Free
		out = append(out, ps)
	}
	return out
}

// remotePools asks the agent name at addr for its own pools.
func (n *Node) remotePools(ctx context.Context, name, addr string) []client.PoolSpace {
	var out []client.PoolSpace
	if err := n.askMember(ctx, name, addr, "/v1/pools/local", &out); err != nil {
		return []client.PoolSpace{{Appliance: name, Error: err.Error()}}
	}
	return out
}
