package main

import (
	"strings"

	"github.com/fleetctl/fleetctl/client"
)

// orphanHint is what status adds after an orphan's line: how to delete it
// through the spec, with the item to paste under shares: on a line of its
// own, or why it cannot be; empty when the agent did not say (an older
// agent).
func orphanHint(orphans []client.Orphan, appliance, poolName string) string {
	pool, name, _ := strings.Cut(poolName, "/")
	for _, o := range orphans {
		if o.Appliance != appliance || o.Pool != pool || o.Name != name {
			continue
		}
		if o.Adopt != "" {
			return "; to delete it, paste this under shares: and apply:\n  " + o.Adopt
		}
		if o.Note != "" {
			return "; " + o.Note
		}
	}
	return ""
}

// indent puts prefix before every line of s but the first, so that a
// text of several lines keeps the indentation of the line it starts on.
func indent(s, prefix string) string {
	return strings.ReplaceAll(s, "\n", "\n"+prefix)
}
