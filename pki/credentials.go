package pki

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync/atomic"
)

// Credentials are what an agent or a CLI user holds: the fleet's CA
// certificate, its own certificate and the certificate's private key, all PEM.
type Credentials struct {
	CACertPEM []byte
	CertPEM   []byte
	KeyPEM    []byte
	// Live, when set, is the certificate and key TLS presents, read at
	// each handshake: a renewed certificate (Live.Set) takes effect on
	// the next connection without new TLS configs. CertPEM and KeyPEM
	// must then be the ones Live held when the config was made.
	Live *LiveCert
}

// LiveCert is a certificate and key that can be replaced while
// connections are made with them. Copies of Credentials share it.
type LiveCert struct {
	cert atomic.Pointer[tls.Certificate]
}

// NewLiveCert holds the certificate and key of c.
func NewLiveCert(c Credentials) (*LiveCert, error) {
	l := &LiveCert{}
	return l, l.Set(c)
}

// Set makes c's certificate and key the ones presented from now on,
// once they fit together under c's CA.
func (l *LiveCert) Set(c Credentials) error {
	c.Live = nil
	p, err := c.parse()
	if err != nil {
		return err
	}
	cert := p.tlsCertificate()
	l.cert.Store(&cert)
	return nil
}

// Leaf is the certificate presented now.
func (l *LiveCert) Leaf() *x509.Certificate { return l.cert.Load().Leaf }

// present is the tls.Config fields that present c's certificate.
func (c Credentials) present(conf *tls.Config, p *parsedCredentials) {
	if c.Live == nil {
		conf.Certificates = []tls.Certificate{p.tlsCertificate()}
		return
	}
	conf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.Live.cert.Load(), nil }
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.Live.cert.Load(), nil }
}

// parsedCredentials are Credentials checked to fit together.
type parsedCredentials struct {
	ca   *x509.Certificate
	leaf *x509.Certificate
	key  crypto.Signer
	id   Identity
	pool *x509.CertPool
}

func (c Credentials) parse() (*parsedCredentials, error) {
	ca, err := parseCertPEM(c.CACertPEM)
	if err != nil {
		return nil, fmt.Errorf("credentials: CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("credentials: certificate %q given as the CA is not a CA", ca.Subject.CommonName)
	}
	leaf, err := parseCertPEM(c.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("credentials: certificate: %w", err)
	}
	key, err := parseKeyPEM(c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("credentials: key: %w", err)
	}
	if !samePublicKey(leaf.PublicKey, key.Public()) {
		return nil, fmt.Errorf("credentials: the key does not belong to certificate %q", leaf.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("credentials: certificate %q is not valid under CA %q: %w", leaf.Subject.CommonName, ca.Subject.CommonName, err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	fleet, err := caFleet(ca)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if id.Fleet != fleet {
		return nil, fmt.Errorf("credentials: certificate is for fleet %q, CA for fleet %q", id.Fleet, fleet)
	}
	return &parsedCredentials{ca: ca, leaf: leaf, key: key, id: id, pool: pool}, nil
}

// Identity is the identity in c's own certificate, once c is checked to be
// whole: a key that fits the certificate, a certificate valid under the CA.
func (c Credentials) Identity() (Identity, error) {
	p, err := c.parse()
	if err != nil {
		return Identity{}, err
	}
	return p.id, nil
}

// Pool is a certificate pool holding only the fleet CA: the sole root any
// fleetctl connection trusts.
func (c Credentials) Pool() (*x509.CertPool, error) {
	p, err := c.parse()
	if err != nil {
		return nil, err
	}
	return p.pool, nil
}

// TLSCertificate is c's certificate and key for a tls.Config. Its chain is
// the certificate followed by the CA certificate, so that a joining node,
// which knows the CA only by its pin, receives the CA to check.
func (c Credentials) TLSCertificate() (tls.Certificate, error) {
	p, err := c.parse()
	if err != nil {
		return tls.Certificate{}, err
	}
	return p.tlsCertificate(), nil
}

func (p *parsedCredentials) tlsCertificate() tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{p.leaf.Raw, p.ca.Raw},
		PrivateKey:  p.key,
		Leaf:        p.leaf,
	}
}

// Bundle is c as one PEM file: CA certificate, certificate, key. It is the
// format of an exported admin credential; it holds a private key, so write
// it with mode 0600.
func (c Credentials) Bundle() []byte {
	var b bytes.Buffer
	b.Write(trimPEM(c.CACertPEM))
	b.Write(trimPEM(c.CertPEM))
	b.Write(trimPEM(c.KeyPEM))
	return b.Bytes()
}

// ParseBundle reads a file written from Credentials.Bundle. The CA is told
// from the holder's certificate by its CA flag, not by its place in the file.
// It refuses a bundle that lacks a part, has one twice, or whose parts do
// not fit together.
func ParseBundle(b []byte) (Credentials, error) {
	var c Credentials
	var cas, leaves, keys int
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case pemCert:
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return Credentials{}, fmt.Errorf("credential bundle: %w", err)
			}
			if cert.IsCA {
				cas++
				c.CACertPEM = encodePEM(pemCert, block.Bytes)
			} else {
				leaves++
				c.CertPEM = encodePEM(pemCert, block.Bytes)
			}
		case pemKey:
			keys++
			c.KeyPEM = encodePEM(pemKey, block.Bytes)
		default:
			return Credentials{}, fmt.Errorf("credential bundle: unexpected PEM block %q", block.Type)
		}
	}
	for _, part := range []struct {
		what string
		n    int
	}{{"CA certificate", cas}, {"certificate", leaves}, {"private key", keys}} {
		if part.n != 1 {
			return Credentials{}, fmt.Errorf("credential bundle has %d %s blocks, want 1 (CA certificate, certificate, private key)", part.n, part.what)
		}
	}
	if _, err := c.parse(); err != nil {
		return Credentials{}, fmt.Errorf("credential bundle: %w", err)
	}
	return c, nil
}

// PeerIdentity is the identity of the client of a connection accepted with
// ServerConfig, read from the chain the handshake verified against the CA.
// It returns ErrNoPeerCertificate when the client sent no certificate, which
// ServerConfig allows only so that a join request can arrive: every other
// use of the connection must refuse it.
//
// On the dialling side use Credentials.ServerIdentity instead: ClientConfig
// verifies the server itself, and Go then leaves VerifiedChains empty.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	return IdentityOf(cs.VerifiedChains[0][0])
}

// ServerIdentity verifies the server's chain of a connection dialled with
// ClientConfig against c's CA and returns the server's identity. It repeats
// what the handshake checked, so it is right however the connection was made.
func (c Credentials) ServerIdentity(cs tls.ConnectionState) (Identity, error) {
	p, err := c.parse()
	if err != nil {
		return Identity{}, err
	}
	return p.verifyServer(cs.PeerCertificates)
}

// verifyServer verifies a server's chain against the CA, without any
// hostname check, and returns its identity, which must be a node of the
// fleet.
func (p *parsedCredentials) verifyServer(certs []*x509.Certificate) (Identity, error) {
	if len(certs) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         p.pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return Identity{}, fmt.Errorf("server certificate %q: %w", certs[0].Subject.CommonName, err)
	}
	id, err := IdentityOf(certs[0])
	if err != nil {
		return Identity{}, err
	}
	if id.Fleet != p.id.Fleet {
		return Identity{}, fmt.Errorf("server %s is in fleet %q, not %q: %w", id.Name, id.Fleet, p.id.Fleet, ErrWrongPeer)
	}
	if id.Role != RoleNode {
		return Identity{}, fmt.Errorf("server %s has role %s, want %s: %w", id.Name, id.Role, RoleNode, ErrWrongPeer)
	}
	return id, nil
}

// ServerConfig is the TLS configuration of an agent's listener: TLS 1.3,
// c's certificate (followed by the CA's, for joiners), and client
// certificates verified against the CA when given.
//
// The handshake accepts a client without a certificate
// (tls.VerifyClientCertIfGiven) because a joining agent has none yet: its
// join request is authenticated by the join token instead. That is the ONLY
// request such a connection may make. Whoever serves the connection must
// call PeerIdentity and refuse anything but a join request when it returns
// ErrNoPeerCertificate, and check the role: Raft, replication and node-only
// API calls need RoleNode.
//
// A client certificate that is given must be valid under the CA and name an
// identity in this fleet, or the handshake fails.
func ServerConfig(c Credentials, nextProtos []string) (*tls.Config, error) {
	p, err := c.parse()
	if err != nil {
		return nil, fmt.Errorf("server TLS config: %w", err)
	}
	if p.id.Role != RoleNode {
		return nil, fmt.Errorf("server TLS config: credentials are for %s %s; only a node may serve", p.id.Role, p.id.Name)
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientCAs:  p.pool,
		ClientAuth: tls.VerifyClientCertIfGiven,
		NextProtos: nextProtos,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil // a join request; see above
			}
			id, err := PeerIdentity(cs)
			if err != nil {
				return fmt.Errorf("client certificate %q: %w", cs.PeerCertificates[0].Subject.CommonName, err)
			}
			if id.Fleet != p.id.Fleet {
				return fmt.Errorf("client %s is in fleet %q, not %q: %w", id.Name, id.Fleet, p.id.Fleet, ErrWrongPeer)
			}
			return nil
		},
	}
	c.present(conf, p)
	return conf, nil
}

// ClientConfig is the TLS configuration for dialling an agent with c: TLS
// 1.3, c's certificate presented, and the server's chain verified against
// the CA alone (never the system roots). The server must be a node of the
// fleet, and when wantName is not empty, the node named wantName.
//
// Agents are dialled by host:port, often an IP address, and the name that
// matters is the appliance name in the certificate's URI SAN, not a DNS name
// or IP SAN (those are whatever the agent said its hosts were when it
// joined). So Go's hostname check is switched off with InsecureSkipVerify,
// and VerifyConnection does the whole verification instead: chain to the
// CA, server-auth usage, fleet, role and name. The two settings only make
// sense together; never copy one without the other.
func ClientConfig(c Credentials, wantName string, nextProtos []string) (*tls.Config, error) {
	p, err := c.parse()
	if err != nil {
		return nil, fmt.Errorf("client TLS config: %w", err)
	}
	if wantName != "" {
		if err := checkName("appliance", wantName); err != nil {
			return nil, fmt.Errorf("client TLS config: %w", err)
		}
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// RootCAs is not consulted while InsecureSkipVerify is set; it is
		// here so that dropping InsecureSkipVerify still trusts the CA alone.
		RootCAs:            p.pool,
		InsecureSkipVerify: true, // verified in full by VerifyConnection
		NextProtos:         nextProtos,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := p.verifyServer(cs.PeerCertificates)
			if err != nil {
				return err
			}
			if wantName != "" && id.Name != wantName {
				return fmt.Errorf("dialled %s but the server is %s: %w", wantName, id.Name, ErrWrongPeer)
			}
			return nil
		},
	}
	c.present(conf, p)
	return conf, nil
}
