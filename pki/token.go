package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
)

// tokenPrefix starts every join token: "fleetctl join, format 1".
const tokenPrefix = "fcj1"

// Token is a join token, made by the bootstrap agent and given to each
// appliance that joins. CAPin lets the joiner trust the fleet before it has
// any certificate (like kubeadm's discovery-token-ca-cert-hash); Secret lets
// the fleet trust the joiner before it has one.
type Token struct {
	// CAPin is SPKIPin of the fleet CA's certificate.
	CAPin [32]byte
	// Secret is 32 random bytes.
	Secret [32]byte
}

// SPKIPin is the SHA-256 of cert's SubjectPublicKeyInfo: what a Token pins.
// It stays the same if the CA certificate is re-issued with the same key.
func SPKIPin(cert *x509.Certificate) [32]byte {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// NewToken makes a join token pinning the CA certificate ca, with a fresh
// secret.
func NewToken(ca *x509.Certificate) (Token, error) {
	if !ca.IsCA {
		return Token{}, fmt.Errorf("new join token: certificate %q is not a CA", ca.Subject.CommonName)
	}
	t := Token{CAPin: SPKIPin(ca)}
	if _, err := rand.Read(t.Secret[:]); err != nil {
		return Token{}, fmt.Errorf("new join token: %w", err)
	}
	return t, nil
}

var tokenEncoding = base64.RawURLEncoding.Strict()

// String is the token as a user copies it: "fcj1.<pin>.<secret>", both
// unpadded base64url, 92 characters with no spaces, quotes or '='. It holds
// the secret: never log it.
func (t Token) String() string {
	return tokenPrefix + "." + tokenEncoding.EncodeToString(t.CAPin[:]) + "." + tokenEncoding.EncodeToString(t.Secret[:])
}

// ParseToken reads a token written by Token.String. Surrounding whitespace
// is ignored, so a pasted line with its newline is fine. The errors wrap
// ErrBadToken and say which part is wrong, never echoing the secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("join token must start with %q: %w", tokenPrefix+".", ErrBadToken)
	}
	if len(parts) != 3 {
		return Token{}, fmt.Errorf("join token has %d parts separated by '.', want 3 (%s.<pin>.<secret>); was it cut off when copied? %w", len(parts), tokenPrefix, ErrBadToken)
	}
	var t Token
	for _, f := range []struct {
		what string
		text string
		dst  []byte
	}{{"CA pin", parts[1], t.CAPin[:]}, {"secret", parts[2], t.Secret[:]}} {
		b, err := tokenEncoding.DecodeString(f.text)
		if err != nil {
			return Token{}, fmt.Errorf("join token %s is not base64url: %v: %w", f.what, err, ErrBadToken)
		}
		if len(b) != len(f.dst) {
			return Token{}, fmt.Errorf("join token %s is %d bytes, want %d; was it cut off when copied? %w", f.what, len(b), len(f.dst), ErrBadToken)
		}
		copy(f.dst, b)
	}
	return t, nil
}

// SecretMatches reports whether other is the same token as t, pin and
// secret, in time that does not depend on where they differ.
func (t Token) SecretMatches(other Token) bool {
	a := append(t.CAPin[:len(t.CAPin):len(t.CAPin)], t.Secret[:]...)
	b := append(other.CAPin[:len(other.CAPin):len(other.CAPin)], other.Secret[:]...)
	return subtle.ConstantTimeCompare(a, b) == 1
}

// JoinConfig is the TLS configuration of an agent that has no certificate
// yet, dialling a fleet member to join: TLS 1.3, no client certificate, and
// a server whose chain ends in a CA whose SPKI hash is t.CAPin and whose
// certificate names a node of that CA. ServerConfig sends the CA after the
// node's certificate for this.
//
// InsecureSkipVerify only turns off Go's own check, which needs a root pool
// the joiner does not have yet and a hostname that is not the identity (see
// ClientConfig); VerifyConnection does the whole verification against the
// pinned CA instead.
func JoinConfig(t Token, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified in full by VerifyConnection
		NextProtos:         nextProtos,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPinned(cs.PeerCertificates, t.CAPin)
			return err
		},
	}
}

// verifyPinned verifies a server chain against the CA certificate in it
// whose SPKI hash is pin, and returns the server's identity.
func verifyPinned(certs []*x509.Certificate, pin [32]byte) (Identity, error) {
	if len(certs) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	found := false
	for _, c := range certs[1:] {
		if c.IsCA && SPKIPin(c) == pin {
			roots.AddCert(c)
			found = true
		} else {
			inter.AddCert(c)
		}
	}
	if !found {
		return Identity{}, fmt.Errorf("server %q sent no CA with pin %s (is the token for another fleet, or is someone in between?): %w",
			certs[0].Subject.CommonName, tokenEncoding.EncodeToString(pin[:]), ErrPinMismatch)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return Identity{}, fmt.Errorf("server certificate %q under the pinned CA: %w", certs[0].Subject.CommonName, err)
	}
	id, err := IdentityOf(certs[0])
	if err != nil {
		return Identity{}, err
	}
	if id.Role != RoleNode {
		return Identity{}, fmt.Errorf("server %s has role %s, want %s: %w", id.Name, id.Role, RoleNode, ErrWrongPeer)
	}
	return id, nil
}
