// Package pki is the fleet's certificate authority and the TLS policy built on
// it.
//
// Every connection in a fleet — agent to agent (Raft, replication streams)
// and CLI to agent (the API) — is mutual TLS under one CA that the bootstrap
// agent creates. Who is on the other end is never read from an address or a
// hostname: it is the identity the CA wrote into the peer's certificate as a
// URI SAN, fleetctl://<fleet>/<role>/<name>. This package is the only place
// that issues those certificates, builds the tls.Configs that check them, and
// reads identities back out, so the rules for "who may talk to whom" live in
// one file a reviewer can read end to end.
//
// A node without a certificate yet joins with a Token: it pins the CA (so the
// joiner trusts the right fleet before it has any credentials) and carries a
// secret (so the fleet trusts the joiner before it has a certificate).
package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/fleetctl/fleetctl/schema"
)

// Sentinel errors, for callers to compare with errors.Is.
var (
	// ErrNoPeerCertificate means the peer presented no verified certificate:
	// on an agent's listener, only a join request may arrive like that.
	ErrNoPeerCertificate = errors.New("peer presented no verified certificate")
	// ErrNoIdentity means a certificate carries no valid fleetctl identity.
	ErrNoIdentity = errors.New("certificate carries no fleetctl identity")
	// ErrWrongPeer means the peer's certificate is valid for the fleet but
	// names another appliance or role than the one wanted.
	ErrWrongPeer = errors.New("peer is not the appliance wanted")
	// ErrPinMismatch means a server's CA is not the one a join token pins.
	ErrPinMismatch = errors.New("server's CA does not match the join token")
	// ErrBadToken means a join token could not be parsed.
	ErrBadToken = errors.New("malformed join token")
)

// Role is what a certificate's holder may do in the fleet.
type Role string

const (
	// RoleNode is an agent: it may speak Raft, serve and call the API, and
	// send or receive replication streams.
	RoleNode Role = "node"
	// RoleAdmin is a CLI user holding an exported credential: API only. Its
	// certificate is good for TLS client authentication only, so it can
	// never pose as an agent.
	RoleAdmin Role = "admin"
)

// Valid reports whether r is a role this package issues.
func (r Role) Valid() bool { return r == RoleNode || r == RoleAdmin }

// uriScheme is the scheme of the URI SAN that carries an identity.
const uriScheme = "fleetctl"

// checkName checks a fleet, appliance or admin name. They end up in URIs,
// certificate subjects and host-like places, so they follow the DNS label
// rule schema applies to appliance and fleet names (schema.ValidName).
func checkName(kind, s string) error {
	if !schema.ValidName(s) {
		return fmt.Errorf("%s name %q: want lowercase letters, digits and '-', at most 63, not starting or ending with '-'", kind, s)
	}
	return nil
}

// Identity is who the holder of a certificate is, as the fleet CA wrote it
// into the certificate's URI SAN.
type Identity struct {
	Fleet string
	Role  Role
	Name  string
}

// String is the identity's URI, fleetctl://<fleet>/<role>/<name>.
func (id Identity) String() string { return id.uri().String() }

func (id Identity) uri() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: id.Fleet, Path: "/" + string(id.Role) + "/" + id.Name}
}

func (id Identity) check() error {
	if err := checkName("fleet", id.Fleet); err != nil {
		return err
	}
	if !id.Role.Valid() {
		return fmt.Errorf("role %q: want %q or %q", id.Role, RoleNode, RoleAdmin)
	}
	return checkName(string(id.Role), id.Name)
}

// IdentityOf reads the identity from cert's fleetctl:// URI SAN. It does not
// verify cert: call it only on a certificate already verified against the
// fleet CA (PeerIdentity and Credentials.ServerIdentity do both).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []*url.URL
	for _, u := range cert.URIs {
		if u.Scheme == uriScheme {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, ErrNoIdentity)
	case 1:
	default:
		return Identity{}, fmt.Errorf("certificate %q has %d fleetctl URIs, want one: %w", cert.Subject.CommonName, len(found), ErrNoIdentity)
	}
	u := found[0]
	id, err := parseIdentityURI(u)
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %q: URI %q: %v: %w", cert.Subject.CommonName, u, err, ErrNoIdentity)
	}
	return id, nil
}

func parseIdentityURI(u *url.URL) (Identity, error) {
	if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Identity{}, errors.New("want fleetctl://<fleet>/<role>/<name> and nothing else")
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 {
		return Identity{}, errors.New("want fleetctl://<fleet>/<role>/<name>")
	}
	id := Identity{Fleet: u.Host, Role: Role(parts[0]), Name: parts[1]}
	if err := id.check(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// Fingerprint is the hex SHA-256 of a certificate's DER: how the fleet
// records the certificates it accepts.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// SecretHash is the hex SHA-256 of a join token's secret, which is all
// the fleet keeps of it; its first 8 hex digits are the token's ID.
func SecretHash(t Token) (id, hash string) {
	sum := sha256.Sum256(t.Secret[:])
	h := hex.EncodeToString(sum[:])
	return h[:8], h
}
