package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/pki"
)

// An agent listens on one TCP port. Every connection is TLS; ALPN says
// whether it carries the Raft protocol or the HTTPS API, so one address
// names an appliance everywhere (the spec, Raft's configuration, the CLI).
const protoRaft = "fleetctl-raft/1" // the API's is client.ProtoAPI

// handshakeTimeout bounds a TLS handshake on the shared port, so a peer that
// connects and says nothing cannot hold a goroutine.
const handshakeTimeout = 10 * time.Second

// mux accepts TLS connections on one listener and hands each to the Raft
// stream layer or the API server by its negotiated protocol.
type mux struct {
	ln   net.Listener
	conf *tls.Config
	// accept says whether the fleet accepts a peer's certificate now
	// (certs.go); connections with one it does not are closed.
	accept func(*x509.Certificate) bool
	log    *slog.Logger
	raft   chan net.Conn
	api    chan net.Conn
	closed chan struct{}
	once   sync.Once
	// raftConns are the Raft connections open in either direction.
	// hashicorp/raft's transport closes neither the connections it
	// accepted nor its pooled ones when it shuts down; closing them here
	// ends the goroutines serving them on both sides.
	raftConns connSet
}

func newMux(ln net.Listener, conf *tls.Config, accept func(*x509.Certificate) bool, log *slog.Logger) *mux {
	return &mux{
		ln:     ln,
		conf:   conf,
		accept: accept,
		log:    log,
		raft:   make(chan net.Conn),
		api:    make(chan net.Conn),
		closed: make(chan struct{}),
	}
}

// serve accepts connections until the listener is closed.
func (m *mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	tc := tls.Server(newReadBufferedConn(c), m.conf)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		m.log.Debug("TLS handshake refused", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	cs := tc.ConnectionState()
	var peer *x509.Certificate
	if len(cs.PeerCertificates) > 0 {
		peer = cs.PeerCertificates[0]
		// Raft connections are checked here; API requests one by one,
		// where a record this agent has not applied yet may be waited for.
		if cs.NegotiatedProtocol == protoRaft && !m.accept(peer) {
			m.log.Warn("refused a connection with a certificate the fleet does not accept (revoked, or never issued by the fleet)", "remote", c.RemoteAddr(), "subject", peer.Subject.CommonName)
			tc.Close()
			return
		}
	}
	var ch chan net.Conn
	switch cs.NegotiatedProtocol {
	case protoRaft:
		// Raft is for agents only: a verified node certificate, nothing less.
		id, err := pki.PeerIdentity(cs)
		if err != nil || id.Role != pki.RoleNode {
			m.log.Warn("refused a Raft connection without a node certificate", "remote", c.RemoteAddr(), "err", err)
			tc.Close()
			return
		}
		ch = m.raft
	default:
		ch = m.api // the API checks identity per request
	}
	var conn net.Conn = tc
	if ch == m.raft {
		conn = m.raftConns.add(tc, peer)
	}
	select {
	case ch <- conn:
	case <-m.closed:
		conn.Close()
	}
}

func (m *mux) close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		err = m.ln.Close()
		m.raftConns.closeAll()
	})
	return err
}

// connSet tracks open connections so that they can all be closed at once.
type connSet struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

// add tracks c until it is closed. Once the set is closed, c is closed at
// once (its user sees the error on first use).
func (s *connSet) add(c net.Conn, peer *x509.Certificate) net.Conn {
	tc := &trackedConn{Conn: c, set: s, peer: peer}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return tc
	}
	if s.conns == nil {
		s.conns = map[*trackedConn]struct{}{}
	}
	s.conns[tc] = struct{}{}
	return tc
}

func (s *connSet) remove(tc *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, tc)
}

// closeAll closes every tracked connection and every one added later.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for tc := range conns {
		tc.Conn.Close()
	}
}

// closeIf closes every tracked connection whose peer certificate drop
// says to drop.
func (s *connSet) closeIf(drop func(*x509.Certificate) bool) int {
	s.mu.Lock()
	var doomed []*trackedConn
	for tc := range s.conns {
		if tc.peer != nil && drop(tc.peer) {
			doomed = append(doomed, tc)
			delete(s.conns, tc)
		}
	}
	s.mu.Unlock()
	for _, tc := range doomed {
		tc.Conn.Close()
	}
	return len(doomed)
}

// trackedConn is a connection of a connSet; closing it leaves the set.
type trackedConn struct {
	net.Conn
	set  *connSet
	peer *x509.Certificate // the other side's certificate
}

func (c *trackedConn) Close() error {
	c.set.remove(c)
	return c.Conn.Close()
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	m    *mux
	ch   chan net.Conn
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.m.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return l.m.close() }
func (l *chanListener) Addr() net.Addr { return l.addr }

// streamLayer is Raft's transport over mutual TLS: it accepts the mux's Raft
// connections and dials peers presenting this node's certificate, checking
// that the peer's certificate names the member Raft means to reach.
type streamLayer struct {
	chanListener
	creds func() pki.Credentials
	// nameOf maps a member's address to its name, from the Raft
	// configuration; unknown addresses are checked against the CA only.
	nameOf func(raft.ServerAddress) string
}

// advertiseAddr is the address other members dial, as Raft reports it.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// Dial connects to a member's Raft endpoint.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conf, err := pki.ClientConfig(s.creds(), s.nameOf(address), []string{protoRaft})
	if err != nil {
		return nil, err
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: conf}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	var peer *x509.Certificate
	if tc, ok := c.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			peer = certs[0]
		}
	}
	return s.m.raftConns.add(c, peer), nil
}
