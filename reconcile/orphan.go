package reconcile

import "fmt"

// orphanReason is the reason line of an orphaned subvolume: kept, and how
// to delete it through the spec, with the exact item to paste under
// shares: (schema.Spec.AbsentShare), or why that cannot be done.
func (pp *poolPlanner) orphanReason(name string) string {
	const kept = "not in the spec: kept on disk"
	item, err := pp.in.Spec.AbsentShare(pp.in.Appliance, pp.pool.Name, name)
	if err != nil {
		return fmt.Sprintf("%s; it cannot be named as a share to delete it (%v): delete it by hand if it is not needed", kept, err)
	}
	reason := kept + "; to delete it, paste this under shares: and apply:\n  " + item
	if len(pp.nested[name]) > 0 {
		reason += fmt.Sprintf("\n(it holds %d nested subvolume(s), which block its deletion until they are deleted by hand)", len(pp.nested[name]))
	}
	return reason
}
