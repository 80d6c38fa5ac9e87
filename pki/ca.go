package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

const (
	// CAValidity is how long a fleet CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// CertValidity is how long an agent or admin certificate is valid.
	// Rotation is not built yet: a certificate that expires must be replaced
	// by re-joining the agent or re-exporting the admin credential.
	CertValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a joiner whose clock runs a
	// little behind the signer's can use its certificate at once.
	clockSkew = time.Hour
)

// PEM block types this package reads and writes.
const (
	pemCert = "CERTIFICATE"
	pemKey  = "PRIVATE KEY" // PKCS#8
	pemCSR  = "CERTIFICATE REQUEST"
)

// CA is the fleet's certificate authority, created by the bootstrap agent.
// Its key signs every agent and admin certificate of the fleet.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// CertPEM is Cert, PEM encoded.
	CertPEM []byte
	// Fleet is the fleet the CA belongs to; every certificate it issues
	// names it.
	Fleet string
	key   crypto.Signer
}

// NewCA creates the CA of fleet: an ECDSA P-256 key and a self-signed
// certificate valid for CAValidity, CN "fleetctl <fleet> CA", which may sign
// leaf certificates only (MaxPathLen 0). Its URI SAN fleetctl://<fleet>
// records the fleet so LoadCA can recover it.
func NewCA(fleet string) (*CA, error) {
	if err := checkName("fleet", fleet); err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	key, _, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new CA for fleet %s: %w", fleet, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA for fleet %s: %w", fleet, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "fleetctl " + fleet + " CA", Organization: []string{"fleetctl"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: uriScheme, Host: fleet}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA for fleet %s: sign: %w", fleet, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA for fleet %s: %w", fleet, err)
	}
	return &CA{Cert: cert, CertPEM: encodePEM(pemCert, der), Fleet: fleet, key: key}, nil
}

// LoadCA rebuilds a CA from its certificate and PKCS#8 key, as written from
// CA.CertPEM and CA.KeyPEM. It refuses a key that does not belong to the
// certificate and a certificate that is not a fleetctl CA.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("load CA: certificate %q is not a CA certificate", cert.Subject.CommonName)
	}
	fleet, err := caFleet(cert)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load CA: the key does not belong to certificate %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, CertPEM: encodePEM(pemCert, cert.Raw), Fleet: fleet, key: key}, nil
}

// KeyPEM is the CA's private key, PKCS#8 PEM encoded. Whoever holds it can
// mint credentials for the whole fleet: store it like a root password.
func (ca *CA) KeyPEM() ([]byte, error) {
	return marshalKey(ca.key)
}

// NewKey makes a fresh ECDSA P-256 key and returns it with its PKCS#8 PEM.
func NewKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, keyPEM, nil
}

// NewCSR makes a PEM certificate request for name, signed with key. A joining
// agent sends it with the join token: the signature proves it holds the key
// the certificate will be issued for.
func NewCSR(key crypto.Signer, name string) ([]byte, error) {
	if err := checkName("appliance", name); err != nil {
		return nil, fmt.Errorf("new CSR: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("new CSR for %s: %w", name, err)
	}
	return encodePEM(pemCSR, der), nil
}

// SignCSR checks the request's signature and issues a PEM certificate for
// name with role, valid for CertValidity (no longer than the CA itself).
//
// The certificate's identity comes from the arguments, never from the
// request: the request's CN must equal name and any DNS names in it must too,
// and a request naming anything else is refused. The certificate gets CN
// name, the URI SAN fleetctl://<fleet>/<role>/<name>, and one SAN per host:
// an IP SAN for an IP address, a DNS SAN otherwise. Empty and unspecified
// hosts (0.0.0.0, ::) name no one and are skipped, so an agent may pass its
// listen host as is. Hosts are for tools that check hostnames; fleetctl
// itself only trusts the URI.
//
// A node certificate is good for TLS server and client authentication; an
// admin certificate for client authentication only.
func (ca *CA) SignCSR(csrPEM []byte, name string, role Role, hosts []string) ([]byte, error) {
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("sign request for %s: %w", name, err)
	}
	if csr.Subject.CommonName != name {
		return nil, fmt.Errorf("sign request for %s: request is for %q", name, csr.Subject.CommonName)
	}
	for _, d := range csr.DNSNames {
		if d != name {
			return nil, fmt.Errorf("sign request for %s: request also names %q", name, d)
		}
	}
	if len(csr.IPAddresses) > 0 || len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("sign request for %s: request names IP addresses, URIs or emails; only the CN is accepted", name)
	}
	der, err := ca.issue(csr.PublicKey, name, role, hosts, CertValidity)
	if err != nil {
		return nil, err
	}
	return encodePEM(pemCert, der), nil
}

// Issue makes a key and a certificate for name with role in one step, for
// credentials made where the CA is: the bootstrap agent's own certificate
// and exported admin credentials. See SignCSR for what the certificate holds.
func (ca *CA) Issue(name string, role Role, hosts []string) (certPEM, keyPEM []byte, err error) {
	return ca.IssueFor(name, role, hosts, CertValidity)
}

// IssueFor is Issue with a certificate valid for validity (at most until
// the CA expires): a short-lived credential, such as the admin credential
// the CLI makes for itself on an appliance.
func (ca *CA) IssueFor(name string, role Role, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s %s: %w", role, name, err)
	}
	der, err := ca.issue(key.Public(), name, role, hosts, validity)
	if err != nil {
		return nil, nil, err
	}
	return encodePEM(pemCert, der), keyPEM, nil
}

func (ca *CA) issue(pub crypto.PublicKey, name string, role Role, hosts []string, validity time.Duration) ([]byte, error) {
	id := Identity{Fleet: ca.Fleet, Role: role, Name: name}
	if err := id.check(); err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	if k, ok := pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("issue %s %s: key is %T, want ECDSA P-256 (as pki.NewKey makes)", role, name, pub)
	}
	dnsNames, ips, err := splitHosts(hosts)
	if err != nil {
		return nil, fmt.Errorf("issue %s %s: %w", role, name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("issue %s %s: %w", role, name, err)
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if role == RoleNode {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"fleetctl " + ca.Fleet}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		URIs:                  []*url.URL{id.uri()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue %s %s: sign: %w", role, name, err)
	}
	return der, nil
}

// splitHosts sorts hosts into DNS names and IP addresses, dropping empty,
// unspecified and duplicate ones.
func splitHosts(hosts []string) ([]string, []net.IP, error) {
	var names []string
	var ips []net.IP
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h), "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() || seen[ip.String()] {
				continue
			}
			seen[ip.String()] = true
			ips = append(ips, ip)
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !validHostname(h) {
			return nil, nil, fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
		if !seen[h] {
			seen[h] = true
			names = append(names, h)
		}
	}
	return names, ips, nil
}

func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// caFleet reads the fleet from a CA certificate's fleetctl://<fleet> URI.
func caFleet(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		if u.Scheme == uriScheme && (u.Path == "" || u.Path == "/") {
			if err := checkName("fleet", u.Host); err != nil {
				return "", fmt.Errorf("CA certificate %q: %w", cert.Subject.CommonName, err)
			}
			return u.Host, nil
		}
	}
	return "", fmt.Errorf("CA certificate %q names no fleet (no fleetctl:// URI): not a fleetctl CA", cert.Subject.CommonName)
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial, nil
}

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func marshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return encodePEM(pemKey, der), nil
}

// findPEM returns the first block of type typ in b.
func findPEM(b []byte, typ string) (*pem.Block, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("no PEM %s block found", typ)
		}
		if block.Type == typ {
			return block, nil
		}
	}
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, err := findPEM(b, pemCert)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, err := findPEM(b, pemKey)
	if err != nil {
		return nil, err
	}
	return parseKeyDER(block.Bytes)
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return signer, nil
}

func parseCSR(b []byte) (*x509.CertificateRequest, error) {
	block, err := findPEM(b, pemCSR)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	return csr, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// trimPEM returns b with surrounding whitespace removed and one newline at
// the end, so concatenated PEM files stay well formed.
func trimPEM(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	return append(b, '\n')
}
