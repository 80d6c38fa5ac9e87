package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Prune is the body of CmdPrune (version 1): forget the failover state and
// trails of shares, and the reports of appliances, that the spec no
// longer names. What is dropped is summed up in the witness log, which
// keeps the newest MaxWitnessLog entries: the history is capped, not lost
// at once.
type Prune struct {
	// Shares whose failover state and trail are dropped.
	Shares []string `json:"shares,omitempty"`
	// Nodes whose last report is dropped.
	Nodes []string `json:"nodes,omitempty"`
	// At is when the leader decided (Apply must not read the clock), and
	// Reason why, one sentence.
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// EventPruned: the leader dropped the state of shares or appliances the
// spec no longer names (CmdPrune writes it).
const EventPruned = "pruned"

func pruneV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var cmd Prune
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdPrune, err)
	}
	next := *cur
	var said []string
	if len(cmd.Shares) > 0 {
		failover := maps.Clone(cur.Failover)
		trails := maps.Clone(cur.Trails)
		for _, share := range cmd.Shares {
			if fo, ok := failover[share]; ok {
				said = append(said, fmt.Sprintf("%s's failover state (active on %s, epoch %d)", share, fo.Active, fo.Epoch))
				delete(failover, share)
			}
			if t, ok := trails[share]; ok {
				said = append(said, fmt.Sprintf("%s's trail (%d attempts)", share, len(t)))
				delete(trails, share)
			}
		}
		next.Failover, next.Trails = failover, trails
	}
	if len(cmd.Nodes) > 0 {
		nodes := maps.Clone(cur.Nodes)
		for _, name := range cmd.Nodes {
			if _, ok := nodes[name]; ok {
				said = append(said, name+"'s last report")
				delete(nodes, name)
			}
		}
		next.Nodes = nodes
	}
	if len(said) == 0 {
		return nil, nil
	}
	slices.Sort(said)
	detail := "dropped " + strings.Join(said, ", ")
	if cmd.Reason != "" {
		detail = cmd.Reason + ": " + detail
	}
	next.WitnessLog = appendWitnessLog(cur.WitnessLog, WitnessEvent{At: cmd.At, Event: EventPruned, Detail: detail})
	return &next, nil
}
