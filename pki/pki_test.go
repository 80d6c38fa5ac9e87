package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

const testProto = "fleetctl-test"

func newTestCA(t *testing.T, fleet string) *CA {
	t.Helper()
	ca, err := NewCA(fleet)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", fleet, err)
	}
	return ca
}

func issue(t *testing.T, ca *CA, name string, role Role) Credentials {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(name, role, []string{"127.0.0.1", name + ".example"})
	if err != nil {
		t.Fatalf("Issue(%s, %s): %v", name, role, err)
	}
	return Credentials{CACertPEM: ca.CertPEM, CertPEM: certPEM, KeyPEM: keyPEM}
}

func serverConfig(t *testing.T, c Credentials) *tls.Config {
	t.Helper()
	conf, err := ServerConfig(c, []string{testProto})
	if err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	return conf
}

func clientConfig(t *testing.T, c Credentials, wantName string) *tls.Config {
	t.Helper()
	conf, err := ClientConfig(c, wantName, []string{testProto})
	if err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	return conf
}

// conversation is what both ends of one TLS connection saw.
type conversation struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

// handshake connects a client to a server over 127.0.0.1 and has the server
// send one byte after its handshake, so that a client certificate the
// server refuses (which TLS 1.3 reports after the client's handshake has
// returned) shows up as the client's error too.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) conversation {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	var conv conversation
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			conv.serverErr = err
			return
		}
		tc := tls.Server(c, serverConf)
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if conv.serverErr = tc.Handshake(); conv.serverErr == nil {
			_, conv.serverErr = tc.Write([]byte{1})
		}
		conv.server = tc.ConnectionState()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	tc := tls.Client(c, clientConf)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if conv.clientErr = tc.Handshake(); conv.clientErr == nil {
		_, conv.clientErr = tc.Read(make([]byte, 1))
	}
	conv.client = tc.ConnectionState()
	tc.Close()
	<-done
	return conv
}

func TestNodesSeeEachOther(t *testing.T) {
	ca := newTestCA(t, "home")
	creds := map[string]Credentials{"nas1": issue(t, ca, "nas1", RoleNode), "nas2": issue(t, ca, "nas2", RoleNode)}
	for _, tc := range []struct{ server, client string }{{"nas1", "nas2"}, {"nas2", "nas1"}} {
		t.Run(tc.client+"->"+tc.server, func(t *testing.T) {
			conv := handshake(t, serverConfig(t, creds[tc.server]), clientConfig(t, creds[tc.client], tc.server))
			if conv.serverErr != nil || conv.clientErr != nil {
				t.Fatalf("handshake: server error %v, client error %v; want none", conv.serverErr, conv.clientErr)
			}
			if got := conv.server.NegotiatedProtocol; got != testProto {
				t.Fatalf("negotiated protocol %q, want %q", got, testProto)
			}
			got, err := PeerIdentity(conv.server)
			if want := (Identity{"home", RoleNode, tc.client}); err != nil || got != want {
				t.Fatalf("server's PeerIdentity = %v, %v; want %v", got, err, want)
			}
			got, err = creds[tc.client].ServerIdentity(conv.client)
			if want := (Identity{"home", RoleNode, tc.server}); err != nil || got != want {
				t.Fatalf("client's ServerIdentity = %v, %v; want %v", got, err, want)
			}
		})
	}
}

func TestClientWithoutCertificateIsAcceptedButHasNoIdentity(t *testing.T) {
	ca := newTestCA(t, "home")
	tok, err := NewToken(ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	conv := handshake(t, serverConfig(t, issue(t, ca, "nas1", RoleNode)), JoinConfig(tok, []string{testProto}))
	if conv.serverErr != nil || conv.clientErr != nil {
		t.Fatalf("handshake: server error %v, client error %v; want none (join requests come without a certificate)", conv.serverErr, conv.clientErr)
	}
	if id, err := PeerIdentity(conv.server); !errors.Is(err, ErrNoPeerCertificate) {
		t.Fatalf("PeerIdentity of a client without certificate = %v, %v; want ErrNoPeerCertificate", id, err)
	}
}

func TestCertificateFromAnotherCAIsRefused(t *testing.T) {
	ours, theirs := newTestCA(t, "home"), newTestCA(t, "home")
	nas1, intruder := issue(t, ours, "nas1", RoleNode), issue(t, theirs, "nas2", RoleNode)

	// The intruder trusts our CA but presents a certificate from theirs.
	client := clientConfig(t, issue(t, ours, "nas3", RoleNode), "nas1")
	cert, err := intruder.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	client.Certificates[0] = cert
	conv := handshake(t, serverConfig(t, nas1), client)
	if conv.serverErr == nil || !strings.Contains(conv.serverErr.Error(), "unknown authority") || conv.clientErr == nil {
		t.Fatalf("foreign client: server error %v, client error %v; want the server to refuse an unknown authority", conv.serverErr, conv.clientErr)
	}

	conv = handshake(t, serverConfig(t, intruder), clientConfig(t, nas1, ""))
	if conv.clientErr == nil || !strings.Contains(conv.clientErr.Error(), "unknown authority") {
		t.Fatalf("foreign server: client error %v; want a refusal of an unknown authority", conv.clientErr)
	}
}

func TestClientRefusesTheWrongNode(t *testing.T) {
	ca := newTestCA(t, "home")
	conv := handshake(t, serverConfig(t, issue(t, ca, "nas1", RoleNode)), clientConfig(t, issue(t, ca, "nas3", RoleNode), "nas2"))
	if !errors.Is(conv.clientErr, ErrWrongPeer) {
		t.Fatalf("dialling nas2 and reaching nas1: client error %v; want ErrWrongPeer", conv.clientErr)
	}
	if conv.serverErr == nil {
		t.Fatalf("dialling nas2 and reaching nas1: server saw no error; want the client's alert")
	}
}

func TestAdmin(t *testing.T) {
	ca := newTestCA(t, "home")
	nas1, alice := issue(t, ca, "nas1", RoleNode), issue(t, ca, "alice", RoleAdmin)

	conv := handshake(t, serverConfig(t, nas1), clientConfig(t, alice, ""))
	if conv.serverErr != nil || conv.clientErr != nil {
		t.Fatalf("admin client: server error %v, client error %v; want none", conv.serverErr, conv.clientErr)
	}
	got, err := PeerIdentity(conv.server)
	if want := (Identity{"home", RoleAdmin, "alice"}); err != nil || got != want {
		t.Fatalf("PeerIdentity = %v, %v; want %v", got, err, want)
	}

	// An admin certificate is for client authentication only.
	if _, err := ServerConfig(alice, nil); err == nil {
		t.Fatalf("ServerConfig with admin credentials: no error; want a refusal")
	}
	conf := serverConfig(t, nas1)
	conf.Certificates[0], err = alice.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	conv = handshake(t, conf, clientConfig(t, nas1, ""))
	if conv.clientErr == nil {
		t.Fatalf("server presenting an admin certificate: client accepted it; want a refusal")
	}
}

func TestJoinConfigPinsTheCA(t *testing.T) {
	ca, other := newTestCA(t, "home"), newTestCA(t, "home")
	server := serverConfig(t, issue(t, ca, "nas1", RoleNode))
	right, err := NewToken(ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := NewToken(other.Cert)
	if err != nil {
		t.Fatal(err)
	}

	if conv := handshake(t, server, JoinConfig(right, nil)); conv.clientErr != nil || conv.serverErr != nil {
		t.Fatalf("right pin: server error %v, client error %v; want none", conv.serverErr, conv.clientErr)
	}
	if conv := handshake(t, server, JoinConfig(wrong, nil)); !errors.Is(conv.clientErr, ErrPinMismatch) {
		t.Fatalf("wrong pin: client error %v; want ErrPinMismatch", conv.clientErr)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	ca := newTestCA(t, "home")
	tok, err := NewToken(ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !strings.HasPrefix(s, "fcj1.") || strings.ContainsAny(s, "=+/ \n") {
		t.Fatalf("token %q: want fcj1. and unpadded base64url", s)
	}
	got, err := ParseToken("  " + s + "\n")
	if err != nil {
		t.Fatalf("ParseToken(String()): %v", err)
	}
	if got != tok || !got.SecretMatches(tok) {
		t.Fatalf("ParseToken(String()) = %+v; want %+v", got, tok)
	}
	if got.CAPin != SPKIPin(ca.Cert) {
		t.Fatalf("token pins %x; want the CA's %x", got.CAPin, SPKIPin(ca.Cert))
	}
	other, err := NewToken(ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if tok.SecretMatches(other) {
		t.Fatalf("two fresh tokens' secrets match; want them to differ")
	}
}

func TestParseTokenErrors(t *testing.T) {
	good := Token{}.String()
	parts := strings.Split(good, ".")
	for _, tc := range []struct {
		name, token, want string
	}{
		{"empty", "", "must start with"},
		{"garbage", "hello world", "must start with"},
		{"wrong prefix", "fcj2." + parts[1] + "." + parts[2], "must start with"},
		{"missing secret", parts[0] + "." + parts[1], "want 3"},
		{"extra part", good + ".x", "want 3"},
		{"not base64", parts[0] + ".!!!." + parts[2], "CA pin is not base64url"},
		{"padded", good + "=", "secret is not base64url"},
		{"short pin", parts[0] + "." + parts[1][:20] + "." + parts[2], "CA pin is 15 bytes, want 32"},
		{"cut off", good[:len(good)-4], "secret is 29 bytes, want 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseToken(tc.token)
			if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseToken(%q) error = %v; want ErrBadToken saying %q", tc.token, err, tc.want)
			}
		})
	}
}

func TestCASaveAndLoad(t *testing.T) {
	ca := newTestCA(t, "home")
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(ca.CertPEM, keyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if loaded.Fleet != "home" || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCA: fleet %q, same cert %v; want home, true", loaded.Fleet, loaded.Cert.Equal(ca.Cert))
	}

	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(key, "nas2")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := loaded.SignCSR(csr, "nas2", RoleNode, []string{"10.0.0.2", "nas2.lan", "0.0.0.0", ""})
	if err != nil {
		t.Fatalf("SignCSR with loaded CA: %v", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("certificate from the loaded CA does not verify under the original: %v", err)
	}
	if len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "10.0.0.2" || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "nas2.lan" {
		t.Fatalf("SANs: IPs %v, DNS %v; want [10.0.0.2], [nas2.lan]", cert.IPAddresses, cert.DNSNames)
	}
	if cert.Subject.CommonName != "nas2" || cert.URIs[0].String() != "fleetctl://home/node/nas2" {
		t.Fatalf("CN %q, URI %v; want nas2, fleetctl://home/node/nas2", cert.Subject.CommonName, cert.URIs)
	}

	other := newTestCA(t, "home")
	if _, err := LoadCA(other.CertPEM, keyPEM); err == nil {
		t.Fatalf("LoadCA with another CA's key: no error; want a refusal")
	}
}

func TestSignCSRRefuses(t *testing.T) {
	ca := newTestCA(t, "home")
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(key, "nas2")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csr)
	tampered := bytes.Clone(block.Bytes)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	badSig := pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: tampered})

	for _, tc := range []struct {
		name, csrName string
		csr           []byte
		role          Role
		hosts         []string
		want          string
	}{
		{"bad signature", "nas2", badSig, RoleNode, nil, "request signature"},
		{"other name", "nas3", csr, RoleNode, nil, `request is for "nas2"`},
		{"not PEM", "nas2", []byte("hello"), RoleNode, nil, "no PEM"},
		{"unknown role", "nas2", csr, Role("root"), nil, "role"},
		{"bad host", "nas2", csr, RoleNode, []string{"nas 2"}, "neither an IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := ca.SignCSR(tc.csr, tc.csrName, tc.role, tc.hosts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SignCSR = %d bytes, error %v; want an error saying %q", len(cert), err, tc.want)
			}
		})
	}
}

func TestBundle(t *testing.T) {
	ca := newTestCA(t, "home")
	alice := issue(t, ca, "alice", RoleAdmin)
	got, err := ParseBundle(alice.Bundle())
	if err != nil {
		t.Fatalf("ParseBundle(Bundle()): %v", err)
	}
	if !bytes.Equal(got.CACertPEM, alice.CACertPEM) || !bytes.Equal(got.CertPEM, alice.CertPEM) || !bytes.Equal(got.KeyPEM, alice.KeyPEM) {
		t.Fatalf("ParseBundle(Bundle()) differs from the credentials bundled")
	}
	if id, err := got.Identity(); err != nil || id != (Identity{"home", RoleAdmin, "alice"}) {
		t.Fatalf("bundle identity = %v, %v; want admin alice of home", id, err)
	}

	noKey := Credentials{CACertPEM: alice.CACertPEM, CertPEM: alice.CertPEM}.Bundle()
	if _, err := ParseBundle(noKey); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("ParseBundle without key: %v; want an error about the private key", err)
	}
	bob := issue(t, ca, "bob", RoleAdmin)
	mixed := Credentials{CACertPEM: alice.CACertPEM, CertPEM: alice.CertPEM, KeyPEM: bob.KeyPEM}.Bundle()
	if _, err := ParseBundle(mixed); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("ParseBundle with another's key: %v; want a key mismatch error", err)
	}
}

func TestIdentityOf(t *testing.T) {
	ca := newTestCA(t, "home")
	if _, err := IdentityOf(ca.Cert); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("IdentityOf(CA cert) error = %v; want ErrNoIdentity", err)
	}
	if _, err := NewCA("Home Fleet"); err == nil {
		t.Fatalf("NewCA(\"Home Fleet\"): no error; want a name error")
	}
}
