package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
)

// Connections from this agent to other members' APIs go through one pooled
// HTTP client per member (and kind of request), kept for the agent's
// life: connections are reused across replication runs, pings and
// plan requests, and every phase of a connection has its own bound,
// so a dead or unreachable peer costs a caller seconds, not the 30 s of a
// request timeout. No client has an overall timeout: a replication stream
// lasts as long as it needs, and callers end requests with their context.

// Bounds of the phases of a connection to a member.
const (
	// peerDialTimeout bounds the TCP connect: a blackholed peer (a cut
	// link, a powered-off appliance) never answers the SYN.
	peerDialTimeout = 3 * time.Second
	// peerTLSHandshakeTimeout bounds the TLS handshake: a hung agent
	// accepts the connection in its kernel but never answers.
	peerTLSHandshakeTimeout = 3 * time.Second
	// peerResponseHeaderTimeout bounds the wait for the answer of a quick
	// request after it was sent. It is above the 10 s a receiver may wait
	// to apply the sender's spec generation (waitGeneration).
	peerResponseHeaderTimeout = 20 * time.Second
	// peerIdleConnTimeout closes pooled connections unused this long, so
	// a connection to a peer that went away is not kept to be tried.
	peerIdleConnTimeout = 30 * time.Second
	// peerKeepAlive is the TCP keep-alive period of a connection.
	peerKeepAlive = 5 * time.Second
)

// peerKind sorts requests to members by how their answer comes.
type peerKind int

const (
	// peerQuick requests are answered at once (held snapshots, progress,
	// plans, pings): the answer's headers are bounded by
	// peerResponseHeaderTimeout.
	peerQuick peerKind = iota
	// peerLong requests are answered only when their work is done (a
	// replication stream is answered after the receive, a switchover's
	// prepare after the final send): only the caller's context bounds the answer.
	peerLong
)

// peerKey names a pooled client: a member by name and address (a member
// that moved gets a new client) and the kind of request.
type peerKey struct {
	name, addr string
	kind       peerKind
}

// streamBufferSize is the write buffer of the clients that stream.
const streamBufferSize = 256 << 10

// peerPool holds the pooled clients of one agent; Shutdown closes them.
type peerPool struct {
	mu      sync.Mutex
	clients map[peerKey]*http.Client
	closed  bool
}

// errPoolClosed is returned for a client asked for after Shutdown.
var errPoolClosed = errors.New("the agent is shutting down")

// peerClient returns the pooled client for requests of kind to the member
// name at addr, which must present that member's certificate.
func (n *Node) peerClient(name, addr string, kind peerKind) (*http.Client, error) {
	p := &n.peers
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	key := peerKey{name: name, addr: addr, kind: kind}
	if c := p.clients[key]; c != nil {
		return c, nil
	}
	conf, err := pki.ClientConfig(n.credentials(), name, []string{client.ProtoAPI})
	if err != nil {
		return nil, fmt.Errorf("TLS client for %s: %w", name, err)
	}
	dialer := &net.Dialer{Timeout: peerDialTimeout, KeepAlive: peerKeepAlive}
	tr := &http.Transport{
		TLSClientConfig:     conf,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: peerTLSHandshakeTimeout,
		IdleConnTimeout:     peerIdleConnTimeout,
		MaxIdleConnsPerHost: 4,
	}
	if kind == peerQuick {
		tr.ResponseHeaderTimeout = peerResponseHeaderTimeout
	} else {
		// Streams (replication, restores): the transport writes a request
		// body through a buffer of this size, and each flush is a TLS
		// record (at most 16 KiB). The default 4 KiB makes four times the
		// records, writes and decryptions for the same stream.
		tr.WriteBufferSize = streamBufferSize
		// And the records of each write go to the socket together
		// (batchconn.go).
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialBatchedTLS(ctx, dialer, conf, network, addr)
		}
	}
	if p.clients == nil {
		p.clients = map[peerKey]*http.Client{}
	}
	c := &http.Client{Transport: tr}
	p.clients[key] = c
	return c, nil
}

// memberClient is peerClient for the member name at its address in the
// Raft configuration; it returns that address too.
func (n *Node) memberClient(name string, kind peerKind) (*http.Client, string, error) {
	addr, err := n.memberAddr(name)
	if err != nil {
		return nil, "", err
	}
	c, err := n.peerClient(name, addr, kind)
	return c, addr, err
}

// close closes every pooled client's idle connections and refuses new
// clients; requests still under way end with their contexts.
func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.clients {
		c.CloseIdleConnections()
	}
	p.clients = nil
}
