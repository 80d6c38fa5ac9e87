package agent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/reconcile/reconciletest"
	"github.com/fleetctl/fleetctl/schema"
)

// unreachableWithin is how long a replication to a dead peer may take to
// fail: the pool's dial or TLS handshake bound (3 s) plus slack for a
// loaded machine. The 30 s of a request timeout is far above it.
const unreachableWithin = 8 * time.Second

// blackhole listens and accepts connections but never answers on them, as
// a hung agent or a cut link past a proxy would: a TLS handshake with it
// never ends.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A replication to a member that does not answer fails within seconds,
// whether the member's port is closed or its agent accepts connections but
// never speaks TLS; the next attempt fails as fast (no pooled connection to
// the dead peer is kept).
func TestReplicationToUnreachablePeerFailsFast(t *testing.T) {
	d := reconciletest.NewFakeDriver()
	d.AddPool(poolPath("n1"))
	cfg := bootstrapConfig(t, "n1")
	cfg.Driver = d
	n := startNode(t, cfg)
	waitUntil(t, "n1 to lead", func() (bool, string) { return n.raft.State() == raft.Leader, n.raft.State().String() })
	if err := d.CreateSubvolume(t.Context(), sharePath("n1", "projects")); err != nil {
		t.Fatalf("create the share: %v", err)
	}

	for _, peer := range []struct{ name, addr string }{
		{"hung", blackhole(t)},
		{"closed", freeAddr(t)},
	} {
		// A non-voter does not change the quorum of the one-node fleet.
		if err := n.raft.AddNonvoter(raft.ServerID(peer.name), raft.ServerAddress(peer.addr), 0, 10*time.Second).Error(); err != nil {
			t.Fatalf("add %s as a member: %v", peer.name, err)
		}
		spec, err := schema.Parse("fleet.yaml", []byte(`version: 1
appliances:
  - name: n1
    address: `+n.cfg.Advertise+`
    pools: [{name: tank, path: `+poolPath("n1")+`}]
  - name: `+peer.name+`
    address: `+peer.addr+`
    pools: [{name: tank, path: /srv/`+peer.name+`/tank}]
shares:
  - name: projects
    appliance: n1
    pool: tank
    replication: {to: `+peer.name+`/tank, schedule: every 24h, retention: 1d}
`))
		if err != nil {
			t.Fatalf("parse the spec: %v", err)
		}
		for attempt := 1; attempt <= 2; attempt++ {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			start := time.Now()
			e := n.replicator.RunOnce(ctx, spec, "projects", nil)
			took := time.Since(start)
			cancel()
			if e.Result != reconcile.ResultFailed || !strings.Contains(e.Error, "ask "+peer.name) {
				t.Fatalf("replication to the %s peer, attempt %d: want a failure asking it, got %+v", peer.name, attempt, e)
			}
			if took > unreachableWithin {
				t.Fatalf("replication to the %s peer, attempt %d: want a failure within %v, took %v (%s)", peer.name, attempt, unreachableWithin, took, e.Error)
			}
		}
		// Nothing was snapshotted for a target that cannot be reached.
		subs, err := d.Subvolumes(t.Context(), poolPath("n1"))
		if err != nil {
			t.Fatalf("list subvolumes: %v", err)
		}
		for _, sv := range subs {
			if strings.HasPrefix(sv.Path, filepath.Join(reconcile.ReplicationDir, "projects")+"/") {
				t.Fatalf("replication to the %s peer: want no snapshot left, got %s", peer.name, sv.Path)
			}
		}
	}
}

// A stream to a hung member fails within seconds too: Send is bounded by
// the connection's phases, not only by its context.
func TestSendToHungPeerFailsFast(t *testing.T) {
	n := startNode(t, bootstrapConfig(t, "n1"))
	waitUntil(t, "n1 to lead", func() (bool, string) { return n.raft.State() == raft.Leader, n.raft.State().String() })
	if err := n.raft.AddNonvoter("hung", raft.ServerAddress(blackhole(t)), 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("add the hung member: %v", err)
	}
	tr := &mtlsTransport{n: n}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := tr.Send(ctx, "hung", reconcile.SendHeader{Share: "projects"}, strings.NewReader("stream"))
	if took := time.Since(start); err == nil || took > unreachableWithin {
		t.Fatalf("Send to a hung member: want an error within %v, got %v after %v", unreachableWithin, err, took)
	}
}
