package agent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/store"
)

const specOne = `version: 1
appliances:
  - name: nas1
    address: 127.0.0.1:7401
    pools: [{name: tank, path: /mnt/tank}]
`

const specTwo = specOne + `shares:
  - name: docs
    appliance: nas1
    pool: tank
`

var appliedAt = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newTestFSM() *store.FSM { return store.NewFSM(slog.New(slog.DiscardHandler)) }

// apply applies one command directly to f, as Raft would, and returns the
// result.
func apply(t *testing.T, f *store.FSM, typ store.CommandType, body any) any {
	t.Helper()
	data, err := store.EncodeCommand(typ, body)
	if err != nil {
		t.Fatalf("EncodeCommand(%v): %v", typ, err)
	}
	return f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
}
