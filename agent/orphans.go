package agent

import (
	"strings"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/store"
)

// orphans lists the orphaned subvolumes the storage appliances of the
// stored spec last reported, in spec order, each with the item that adopts
// it as a share marked state: absent (schema.Spec.AbsentShare) or why none
// can.
func orphans(st *store.State) []client.Orphan {
	out := []client.Orphan{}
	for _, a := range applianceStatuses(st) {
		for _, o := range a.Orphans {
			pool, name, ok := strings.Cut(o, "/")
			if !ok {
				continue
			}
			or := client.Orphan{Appliance: a.Name, Pool: pool, Name: name}
			if item, err := st.Spec.AbsentShare(a.Name, pool, name); err != nil {
				or.Note = "it cannot be named as a share to delete it (" + err.Error() + "): delete it by hand if it is not needed"
			} else {
				or.Adopt = item
			}
			out = append(out, or)
		}
	}
	return out
}
