package schema

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// AbsentShare is the list item that, pasted under shares: of s, adopts the
// subvolume name on appliance's pool as a share marked state: absent, so
// that the next apply deletes it by the fleet's rules (its snapshots kept,
// refused while it holds nested subvolumes), like "- {name: scratch,
// appliance: nas1, pool: tank, state: absent}".
//
// It fails, saying why, when s with that item would not validate: the name
// is not a valid share name, a share has it already, or the appliance or
// pool is not a storage pool of s. Then the subvolume cannot be adopted and
// stays an orphan until deleted by hand.
func (s *Spec) AbsentShare(appliance, pool, name string) (string, error) {
	sh := Share{Name: name, Appliance: appliance, Pool: pool, State: StateAbsent, Failover: FailoverOff}
	// A copy of s with the share appended, as the pasted line would make
	// it (the share with its defaults); s itself is not changed.
	cp := *s
	cp.Shares = append(s.Shares[:len(s.Shares):len(s.Shares)], sh)
	prefix := fmt.Sprintf("shares[%d]", len(s.Shares))
	var why []string
	for _, e := range cp.validate(nil) {
		if e.Path == prefix || strings.HasPrefix(e.Path, prefix+".") {
			why = append(why, e.Message)
		}
	}
	if len(why) > 0 {
		return "", fmt.Errorf("%s", strings.Join(why, "; "))
	}
	return fmt.Sprintf("- {name: %s, appliance: %s, pool: %s, state: %s}", yamlString(name), yamlString(appliance), yamlString(pool), StateAbsent), nil
}

// yamlString writes s as a YAML flow scalar that reads back as the string
// s: plain when it does, else double-quoted (a name like 123, true or null
// would read as a number, a boolean or nothing).
func yamlString(s string) string {
	var v any
	if err := yaml.Unmarshal([]byte("["+s+"]"), &v); err == nil {
		if l, ok := v.([]any); ok && len(l) == 1 && l[0] == s {
			return s
		}
	}
	return strconv.Quote(s)
}
