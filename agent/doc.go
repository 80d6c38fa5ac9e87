// Package agent is the composition root of `fleetctl agent`: it starts,
// wires and stops every part an appliance runs, in order.
//
// Where things live:
//
//   - node.go: Config, Start and Shutdown; the Raft node (hashicorp/raft
//     with raft-boltdb) over the FSM of package store; the data dir.
//   - raftdb.go: the check of raft.db before raft-boltdb opens it, so a
//     damaged or emptied file stops Start with an error, not a crash.
//   - transport.go: the one TCP port, TLS on every connection, ALPN
//     choosing between the Raft transport and the API.
//   - access.go: who may call each route of the API and where it runs (the
//     table), enforced before any handler; redirects to the leader.
//   - api.go: the API's handlers for status, spec, join; the request and
//     response types are package client's.
//   - certs.go: the certificates the fleet accepts (recorded in the
//     store), revocation, join tokens, certificate renewal.
//   - members.go: joins, removals and the voter set.
//   - recover.go: recovery from quorum loss (fleetctl agent --recover):
//     the offline rewrite of the Raft configuration, and what the new
//     leader forgets of the dropped members.
//   - appliance.go: the reconcile loop of this appliance and the plan
//     endpoints behind `fleetctl diff`.
//   - replication.go: the replication sender and receiver (package
//     reconcile does the btrfs work) and their endpoints.
//   - lease.go: this appliance's lease with the leader and the fencing
//     when it lapses; fence/ is the records and the guard process.
//   - writedoor.go: the one door through which a share becomes writable.
//   - witness.go, witnessdecide.go: the leader's witness, a pure decider
//     and the loop that applies its decisions (failover, the witness log).
//   - switchover.go: planned switchovers and failback.
//   - snapshots.go, diverged.go, drill.go: every copy of a share across
//     the fleet, what a demoted share wrote, disaster-recovery drills.
//   - restore.go, restoreinplace.go, restoreon.go: restores from a copy:
//     files out, a new share, in place, and onto another appliance.
//   - prune.go: the leader keeps the replicated state following the spec.
//   - peers.go: the pooled HTTP clients to the other members.
//   - metrics.go: the Prometheus registry and the collector that reads
//     the agent's state at each scrape (GET /metrics, --metrics-listen);
//     raftmetrics.go bridges raft's go-metrics into it.
//
// Everything the agent persists through Raft is a command of package
// store, proposed with store.Propose (Node.apply). Shutdown fences first,
// then stops the loops and waits for every goroutine it started.
package agent
