package agent

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
)

// Who may do what. Every route of the API is declared once, in routeTable,
// with who may call it and where it runs; authorize enforces both before
// the handler runs. docs/design.md has the same table for people.
//
// Identities come from the TLS handshake only: the client certificate's
// fleetctl://<fleet>/<role>/<name> URI, verified against the fleet's CA.
// No header can change who a request is from. A request that must run on
// another agent (a write on the leader, a replication run on the share's
// sending agent) is never passed on with this agent's certificate: the
// caller gets a redirect naming the member (client.HeaderMember) and
// repeats the request there with its own certificate, as rqlite redirects
// writes to its leader.

// access says which identities may call a route.
type access int

const (
	// accessToken: no certificate; the join token in the body
	// authenticates (POST /v1/join only).
	accessToken access = iota
	// accessAny: an admin credential or the node certificate of a current
	// member. Reads.
	accessAny
	// accessAdmin: an admin credential.
	accessAdmin
	// accessNode: the node certificate of a current member.
	accessNode
	// accessSelf: the node certificate of a current member, acting for
	// itself; the handler checks the appliance the request is about with
	// requireSelf.
	accessSelf
	// accessJoiner: a node certificate of the fleet, member or not yet,
	// acting for itself (a joining node adding itself).
	accessJoiner
	// accessLeader: the node certificate of the current Raft leader.
	accessLeader
)

func (a access) String() string {
	return [...]string{"the join token", "any member or admin", "an admin", "a member agent", "the agent itself", "a joining agent itself", "the leader"}[a]
}

// runsOn says where a route's handler runs.
type runsOn int

const (
	// onAny: the agent that got the request answers.
	onAny runsOn = iota
	// onLeader: the Raft leader; other agents redirect there.
	onLeader
)

// route is one entry of the API.
type route struct {
	pattern string
	who     access
	where   runsOn
	handler func(*Node, http.ResponseWriter, *http.Request)
}

// routeTable is every route of the API. Routes that run on a share's
// sending agent (replication run, wait, progress) redirect there in
// their handler (replicationSource), because which agent that is depends
// on the request; a drill redirects to the share's replica (replicaOf), a
// restore to the appliance holding the copy (handleRestore).
var routeTable = []route{
	{"POST /v1/join", accessToken, onLeader, (*Node).handleJoin},
	{"GET /v1/ping", accessAny, onAny, (*Node).handlePing},
	{"GET /v1/status", accessAny, onAny, (*Node).handleStatus},
	{"GET /v1/orphans", accessAny, onAny, (*Node).handleOrphans},
	{"GET /v1/spec", accessAny, onAny, (*Node).handleGetSpec}, // ?consistent=1 runs on the leader
	{"POST /v1/spec", accessAdmin, onLeader, (*Node).handleApply},
	{"POST /v1/plan", accessAdmin, onAny, (*Node).handlePlan},
	{"POST /v1/plan/local", accessNode, onAny, (*Node).handlePlanLocal},
	{"POST /v1/members", accessJoiner, onLeader, (*Node).handleAddMember},
	{"DELETE /v1/members/{name}", accessAdmin, onLeader, (*Node).handleRemoveMember},
	{"POST /v1/nodes/{name}/status", accessSelf, onLeader, (*Node).handleSetNodeStatus},
	{"POST /v1/lease", accessSelf, onLeader, (*Node).handleLease},
	{"POST /v1/trails", accessSelf, onLeader, (*Node).handleAppendTrail},
	{"GET /v1/replication/trail", accessAny, onAny, (*Node).handleTrail},
	{"GET /v1/replication/status", accessAny, onAny, (*Node).handleReplicationStatus},
	{"GET /v1/replication/progress", accessAny, onAny, (*Node).handleProgress},
	{"POST /v1/replication/run", accessAdmin, onAny, (*Node).handleRun},
	{"GET /v1/replication/wait", accessAdmin, onAny, (*Node).handleWaitRun},
	{"POST /v1/replication/drill", accessAdmin, onAny, (*Node).handleDrill},       // runs on the share's replica: a check command as the agent's user
	{"POST /v1/restore", accessAdmin, onAny, (*Node).handleRestore},               // runs on the appliance holding the copy: writes as the agent's user
	{"POST /v1/restore/receive", accessNode, onAny, (*Node).handleRestoreReceive}, // only the copy's appliance, with a ticket an admin asked for here
	{"GET /v1/replication/held", accessNode, onAny, (*Node).handleHeld},
	{"POST /v1/replication/receive", accessNode, onAny, (*Node).handleReceive},
	{"POST /v1/failover", accessAdmin, onLeader, (*Node).handleFailover},
	{"POST /v1/switchover/prepare", accessLeader, onAny, (*Node).handlePrepare},
	{"POST /v1/certs/self", accessNode, onLeader, (*Node).handleRecordSelf},
	{"POST /v1/certs", accessNode, onLeader, (*Node).handleRecordCert},
	{"POST /v1/certs/renew", accessNode, onLeader, (*Node).handleRenewCert},
	{"GET /v1/certs", accessAny, onAny, (*Node).handleListCerts},
	{"POST /v1/certs/revoke", accessAdmin, onLeader, (*Node).handleRevokeCert},
	{"POST /v1/tokens", accessAdmin, onLeader, (*Node).handleCreateToken},
	{"GET /v1/tokens", accessAdmin, onAny, (*Node).handleListTokens},
	{"DELETE /v1/tokens/{id}", accessAdmin, onLeader, (*Node).handleRevokeToken},
	{"GET /v1/pools", accessAny, onAny, (*Node).handlePools},
	{"GET /v1/pools/local", accessAny, onAny, (*Node).handlePoolsLocal},
	{"GET /v1/snapshots", accessAny, onAny, (*Node).handleSnapshots},
	{"GET /v1/snapshots/local", accessAny, onAny, (*Node).handleSnapshotsLocal},
	{"GET /v1/diverged", accessAny, onAny, (*Node).handleDiverged},
	{"GET /v1/diverged/local", accessAny, onAny, (*Node).handleDivergedLocal},
	{"GET /v1/witness/status", accessAny, onLeader, (*Node).handleWitnessStatus},
	{"GET /v1/witness/log", accessAny, onAny, (*Node).handleWitnessLog},
	{"POST /v1/witness/ack", accessNode, onAny, (*Node).handleWitnessAck},       // a check round of the leader's term (witnessack.go)
	{"POST /v1/witness/report", accessNode, onAny, (*Node).handleWitnessReport}, // a voter's report to the leader of its term
	// Prometheus metrics: what status and witness status show, as
	// numbers; any admin or member, as those reads (metrics.go).
	{"GET /metrics", accessAny, onAny, (*Node).handleMetrics},
}

func (n *Node) routes() http.Handler {
	m := http.NewServeMux()
	for _, rt := range routeTable {
		m.Handle(rt.pattern, n.authorize(rt))
	}
	return m
}

type ctxKey struct{}

// identityOf returns the verified caller of a request that passed
// authorize.
func identityOf(r *http.Request) pki.Identity {
	id, _ := r.Context().Value(ctxKey{}).(pki.Identity)
	return id
}

// userOf names the caller for the record, like admin:alice or node:nas1.
func userOf(r *http.Request) string {
	id := identityOf(r)
	return string(id.Role) + ":" + id.Name
}

// authorize wraps a route's handler with its access rule and placement.
func (n *Node) authorize(rt route) http.Handler {
	var h http.HandlerFunc = func(w http.ResponseWriter, r *http.Request) { rt.handler(n, w, r) }
	if rt.where == onLeader {
		h = n.onLeader(h)
	}
	if rt.who == accessToken {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			writeError(w, http.StatusUnauthorized, &client.APIError{Code: client.CodeUnauthorized, Message: "TLS is required"})
			return
		}
		id, err := pki.PeerIdentity(*r.TLS)
		if err != nil {
			writeError(w, http.StatusUnauthorized, &client.APIError{Code: client.CodeUnauthorized, Message: "a client certificate of this fleet is required (use --data-dir on an appliance or --credential with an exported admin credential)"})
			return
		}
		if ok, why := n.acceptsSoon(r.Context(), r.TLS.PeerCertificates[0]); !ok {
			writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeForbidden, Message: why})
			return
		}
		if why := n.refuse(rt.who, id); why != "" {
			if why == notMember {
				if addr, _ := n.raft.LeaderWithID(); addr == "" {
					// An agent that has not joined its fleet yet, or
					// has just bootstrapped it, cannot tell members
					// from strangers: say so, and let the caller retry.
					writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: n.cfg.Name + " knows no leader yet, so it cannot tell who is a member; retry in a moment"})
					return
				}
			}
			writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeForbidden,
				Message: fmt.Sprintf("%s %s is for %s; %s:%s may not: %s", r.Method, r.URL.Path, rt.who, id.Role, id.Name, why)})
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// refuse says why id may not call a route open to who, or "" when it may.
func (n *Node) refuse(who access, id pki.Identity) string {
	switch id.Role {
	case pki.RoleAdmin:
		if who == accessAny || who == accessAdmin {
			return ""
		}
		return "admin credentials do not act as an agent"
	case pki.RoleNode:
	default:
		return "unknown role"
	}
	switch who {
	case accessAdmin:
		return "an agent's certificate does not act as an admin"
	case accessJoiner:
		return ""
	case accessLeader:
		if _, leader := n.raft.LeaderWithID(); string(leader) != id.Name || leader == "" {
			return "it is not the leader"
		}
		return ""
	}
	if !n.isMember(id.Name) {
		return notMember
	}
	return ""
}

// notMember is refuse's answer for a node certificate of no member.
const notMember = "it is not a member of the fleet"

// isMember says whether name is in the current Raft configuration.
func (n *Node) isMember(name string) bool {
	_, err := n.memberAddr(name)
	return err == nil
}

// requireSelf refuses the request unless its caller is the node named
// appliance: a node renews only its own lease, reports only its own
// status, records only its own replication attempts.
func requireSelf(w http.ResponseWriter, r *http.Request, appliance, what string) bool {
	id := identityOf(r)
	if id.Role == pki.RoleNode && id.Name == appliance && appliance != "" {
		return true
	}
	writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeForbidden,
		Message: fmt.Sprintf("only the agent %q %s (asked by %s:%s)", appliance, what, id.Role, id.Name)})
	return false
}

// onLeader runs h on the leader; any other agent redirects the caller
// there.
func (n *Node) onLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.raft.State() == raft.Leader {
			if !n.leaderReady.Load() {
				writeError(w, http.StatusServiceUnavailable, &client.APIError{Code: client.CodeNoLeader, Message: "the new leader is still applying earlier entries; retry in a moment"})
				return
			}
			h(w, r)
			return
		}
		addr, id := n.raft.LeaderWithID()
		if addr == "" {
			writeError(w, http.StatusServiceUnavailable, n.noLeaderError(r.Context()))
			return
		}
		redirect(w, r, string(id), string(addr))
	}
}

// redirect sends the caller to the member name at addr, with the same
// method, path and body.
func redirect(w http.ResponseWriter, r *http.Request, name, addr string) {
	w.Header().Set(client.HeaderMember, name)
	w.Header().Set("Location", "https://"+addr+r.URL.RequestURI())
	writeJSON(w, http.StatusTemporaryRedirect, &client.APIError{Code: client.CodeRedirect, Message: fmt.Sprintf("ask %s at %s", name, addr)})
}
