package agent

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/store"
)

// Certificates the fleet accepts, and join tokens. The CA signs; the
// replicated state decides (store/certs.go). A certificate is accepted
// when it is signed by the fleet's CA and recorded in the state. Records
// are made by a join (the leader records the certificate it signs), by
// `credential issue` and the CLI's own credential on an appliance (the
// local agent records the admin certificate signed there), and once by
// every member for its own certificate (fleets from before the records).
// Members remove and credential revoke forget them, and every port refuses
// a certificate that is no longer recorded within seconds.

// joinWindow is how long after a join's certificate was recorded its
// agent may add itself to the Raft group (join step 2); a certificate
// recorded earlier never adds a member again, so a removed member cannot
// come back with it. It is also how long the leader leaves the
// certificate of a node that is not a member before forgetting it.
const joinWindow = 10 * time.Minute

// DefaultTokenTTL is how long a join token works unless told otherwise.
const DefaultTokenTTL = 24 * time.Hour

// accepts says whether the fleet accepts cert, and if not, why. On an
// agent whose state records no certificate at all (a fleet from before
// the records, or a new agent that has not caught up) the CA's signature
// is enough. A member's node certificate is accepted while no certificate
// is recorded for its name, so that it can record its own.
func (n *Node) accepts(st *store.State, cert *x509.Certificate) (bool, string) {
	if len(st.Certs) == 0 {
		return true, ""
	}
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return false, err.Error()
	}
	if st.Accepts(string(id.Role), id.Name, pki.Fingerprint(cert)) {
		return true, ""
	}
	if id.Role == pki.RoleNode && !st.HasCerts(string(id.Role), id.Name) && n.isMember(id.Name) {
		return true, ""
	}
	return false, fmt.Sprintf("the fleet does not accept this certificate of %s:%s (revoked, or never issued by the fleet)", id.Role, id.Name)
}

// acceptsConn is the mux's check of a connection's peer certificate.
func (n *Node) acceptsConn(cert *x509.Certificate) bool {
	ok, _ := n.accepts(n.fsm.State(), cert)
	return ok
}

// certRecord is the record of cert, recorded by whom at when.
func certRecord(cert *x509.Certificate, by string, at time.Time) (store.CertRecord, error) {
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return store.CertRecord{}, err
	}
	return store.CertRecord{
		Fingerprint: pki.Fingerprint(cert), Role: string(id.Role), Name: id.Name,
		Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter.UTC(), IssuedAt: at.UTC(), IssuedBy: by,
	}, nil
}

// parseCertPEM reads one PEM certificate.
func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// handleRecordSelf records the caller's own node certificate.
func (n *Node) handleRecordSelf(w http.ResponseWriter, r *http.Request) {
	cert := r.TLS.PeerCertificates[0]
	rec, err := certRecord(cert, userOf(r), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: err.Error()})
		return
	}
	if n.fsm.State().Accepts(rec.Role, rec.Name, rec.Fingerprint) && len(n.fsm.State().Certs) > 0 {
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if _, err := n.apply(store.CmdRecordCert, rec); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// handleRecordCert records an admin certificate a member agent signed
// with the CA key in its data dir (credential issue, the CLI's own
// credential on an appliance). Members hold the CA key: they are trusted
// to say what they signed.
func (n *Node) handleRecordCert(w http.ResponseWriter, r *http.Request) {
	var req client.RecordCertRequest
	if !readJSON(w, r, &req) {
		return
	}
	cert, err := parseCertPEM([]byte(req.CertPEM))
	if err == nil {
		_, err = verifyFleetCert(n.credentials().CACertPEM, cert)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "certificate: " + err.Error()})
		return
	}
	rec, err := certRecord(cert, userOf(r), time.Now())
	if err != nil || rec.Role != string(pki.RoleAdmin) {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "only admin certificates are recorded this way (node certificates by joining)"})
		return
	}
	if _, err := n.apply(store.CmdRecordCert, rec); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, client.CertInfo(rec))
}

// verifyFleetCert checks that cert is signed by the fleet's CA.
func verifyFleetCert(caPEM []byte, cert *x509.Certificate) (pki.Identity, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return pki.Identity{}, errors.New("no CA certificate")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return pki.Identity{}, err
	}
	return pki.IdentityOf(cert)
}

// handleListCerts lists the certificates the fleet accepts.
func (n *Node) handleListCerts(w http.ResponseWriter, r *http.Request) {
	st := n.fsm.State()
	out := []client.CertInfo{}
	for _, rec := range st.Certs {
		out = append(out, client.CertInfo(rec))
	}
	slices.SortFunc(out, func(a, b client.CertInfo) int {
		if c := cmpStrings(a.Role+":"+a.Name, b.Role+":"+b.Name); c != 0 {
			return c
		}
		return a.IssuedAt.Compare(b.IssuedAt)
	})
	writeJSON(w, http.StatusOK, out)
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// handleRevokeCert forgets an admin's certificates (all of them, or the
// one with the fingerprint given): revocation. A node's certificates go
// with `members remove`.
func (n *Node) handleRevokeCert(w http.ResponseWriter, r *http.Request) {
	var req client.RevokeRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Role == "" {
		req.Role = string(pki.RoleAdmin)
	}
	if req.Role != string(pki.RoleAdmin) {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "a node's certificates are revoked by removing the member: fleetctl members remove " + req.Name})
		return
	}
	res, err := n.apply(store.CmdForgetCerts, store.ForgetCerts{Role: req.Role, Name: req.Name, Fingerprint: req.Fingerprint, By: userOf(r), Reason: "credential revoke", At: time.Now().UTC()})
	if err != nil {
		writeApplyError(w, err)
		return
	}
	count, _ := res.(int)
	if count == 0 {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("no recorded certificate of %s:%s", req.Role, req.Name)})
		return
	}
	n.log.Warn("revoked certificates", "role", req.Role, "name", req.Name, "count", count, "by", userOf(r))
	writeJSON(w, http.StatusOK, client.RevokeResponse{Revoked: count})
}

// forgetNode forgets every certificate of the node name, and the admin
// credential the CLI kept on it (local-<name>), and revokes every join
// token: what a removed member held no longer opens anything.
func (n *Node) forgetNode(name, by string) error {
	at := time.Now().UTC()
	for _, id := range []pki.Identity{{Role: pki.RoleNode, Name: name}, {Role: pki.RoleAdmin, Name: localAdminName(name)}} {
		if _, err := n.apply(store.CmdForgetCerts, store.ForgetCerts{Role: string(id.Role), Name: id.Name, By: by, Reason: "members remove " + name, At: at}); err != nil {
			return err
		}
	}
	_, err := n.apply(store.CmdJoinTokens, store.JoinTokenChange{Revoke: []string{"*"}, At: at})
	return err
}

// sweepCerts, on the leader, forgets the certificates of nodes that are
// not members and whose certificate was recorded longer ago than
// joinWindow: a leader that removed itself, or a join that never finished.
func (n *Node) sweepCerts() {
	if n.raft.State() != raft.Leader || !n.leaderReady.Load() {
		return
	}
	st := n.fsm.State()
	now := time.Now()
	stale := map[string]bool{}
	for _, rec := range st.Certs {
		if rec.Role == string(pki.RoleNode) && now.Sub(rec.IssuedAt) > joinWindow && !n.isMember(rec.Name) {
			stale[rec.Name] = true
		}
	}
	for name := range stale {
		if _, err := n.apply(store.CmdForgetCerts, store.ForgetCerts{Role: string(pki.RoleNode), Name: name, By: "node:" + n.cfg.Name, Reason: name + " is not a member", At: now.UTC()}); err != nil {
			n.log.Warn("could not forget a former member's certificates", "name", name, "err", err)
			continue
		}
		n.log.Info("forgot the certificates of a node that is not a member", "name", name)
	}
}

// recordSelfLoop records this agent's own certificate once the fleet has
// a leader, unless it is recorded already.
func (n *Node) recordSelfLoop(ctx context.Context) {
	cert, err := parseCertPEM(n.credentials().CertPEM)
	if err != nil {
		n.log.Error("cannot read this agent's certificate", "err", err)
		return
	}
	fp := pki.Fingerprint(cert)
	wait := 500 * time.Millisecond
	for {
		st := n.fsm.State()
		if st.Accepts(string(pki.RoleNode), n.cfg.Name, fp) {
			return
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			cl, err := client.NewClient(n.cfg.Advertise, n.credentials(), n.cfg.Name)
			if err == nil {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err = cl.RecordSelf(rctx)
				cancel()
				cl.Close()
			}
			if err != nil {
				n.log.Debug("could not record this agent's certificate yet", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// bootstrapTokenWait bounds how long a join with the bootstrap token waits
// for the new fleet to record it.
const bootstrapTokenWait = 10 * time.Second

// joinTokenState returns the state to check the join token tok against.
// When tok is this run's bootstrap token and the new fleet has not yet
// recorded it (its first leader does that once ready, a moment after the
// election), it waits for the record, at most bootstrapTokenWait, instead
// of refusing a join made right after --bootstrap.
func (n *Node) joinTokenState(ctx context.Context, tok pki.Token) *store.State {
	st, changed := n.fsm.Watch()
	if tokenValid(st, tok, time.Now()) || !n.tokenPending.Load() {
		return st
	}
	want, _ := pki.SecretHash(n.token)
	if id, _ := pki.SecretHash(tok); id != want {
		return st
	}
	timeout := time.NewTimer(bootstrapTokenWait)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return st
		case <-timeout.C:
			return st
		case <-changed:
		}
		st, changed = n.fsm.Watch()
		if tokenValid(st, tok, time.Now()) || !n.tokenPending.Load() {
			return st
		}
	}
}

// tokenValid says whether tok is a join token the fleet accepts at now.
func tokenValid(st *store.State, tok pki.Token, now time.Time) bool {
	id, hash := pki.SecretHash(tok)
	t, ok := st.Tokens[id]
	return ok && subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(hash)) == 1 && now.Before(t.Expires)
}

// handleCreateToken makes a join token, records its hash and returns it:
// the only time the secret is shown.
func (n *Node) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req client.TokenRequest
	if !readJSON(w, r, &req) {
		return
	}
	ttl := DefaultTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: fmt.Sprintf("--ttl %q: %v", req.TTL, err)})
			return
		}
		ttl = d
	}
	if ttl < time.Second || ttl > 30*24*time.Hour {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: fmt.Sprintf("--ttl %s: want between 1s and 720h", ttl)})
		return
	}
	tok, rec, err := n.newToken(ttl, userOf(r), req.Description)
	if err != nil {
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
		return
	}
	if _, err := n.apply(store.CmdJoinTokens, store.JoinTokenChange{Create: &rec, At: rec.CreatedAt}); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, client.TokenResponse{Token: tok.String(), Info: tokenInfo(rec)})
}

// newToken makes a join token pinned to this fleet's CA and its record.
func (n *Node) newToken(ttl time.Duration, by, desc string) (pki.Token, store.JoinToken, error) {
	tok, err := pki.NewToken(n.ca.Cert)
	if err != nil {
		return tok, store.JoinToken{}, err
	}
	return tok, tokenRecord(tok, ttl, by, desc, time.Now()), nil
}

func tokenRecord(tok pki.Token, ttl time.Duration, by, desc string, now time.Time) store.JoinToken {
	id, hash := pki.SecretHash(tok)
	return store.JoinToken{ID: id, SecretHash: hash, Expires: now.Add(ttl).UTC(), CreatedAt: now.UTC(), CreatedBy: by, Description: desc}
}

// handleListTokens lists the join tokens in force (never their secrets).
func (n *Node) handleListTokens(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	out := []client.TokenInfo{}
	for _, t := range n.fsm.State().Tokens {
		if now.Before(t.Expires) {
			out = append(out, tokenInfo(t))
		}
	}
	slices.SortFunc(out, func(a, b client.TokenInfo) int { return a.CreatedAt.Compare(b.CreatedAt) })
	writeJSON(w, http.StatusOK, out)
}

// handleRevokeToken revokes one join token by ID.
func (n *Node) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := n.fsm.State().Tokens[id]; !ok {
		writeError(w, http.StatusNotFound, &client.APIError{Code: client.CodeNotFound, Message: fmt.Sprintf("no join token %q (fleetctl token list)", id)})
		return
	}
	if _, err := n.apply(store.CmdJoinTokens, store.JoinTokenChange{Revoke: []string{id}, At: time.Now().UTC()}); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func tokenInfo(t store.JoinToken) client.TokenInfo {
	return client.TokenInfo{ID: t.ID, Expires: t.Expires, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy, Description: t.Description}
}

// sweepInterval is how often the leader looks for certificates of nodes
// that are not members.
const sweepInterval = 10 * time.Second

// recordBootstrapToken records the join token a bootstrap wrote to the
// data dir, valid for DefaultTokenTTL from now.
func (n *Node) recordBootstrapToken() {
	defer n.tokenPending.Store(false)
	rec := tokenRecord(n.token, DefaultTokenTTL, "node:"+n.cfg.Name, "made by --bootstrap", time.Now())
	if _, err := n.apply(store.CmdJoinTokens, store.JoinTokenChange{Create: &rec, At: rec.CreatedAt}); err != nil {
		n.log.Warn("could not record the bootstrap join token; make one with 'fleetctl token create'", "err", err)
	}
}

// dropRevokedLoop closes the Raft connections whose peer certificate the
// fleet stopped accepting, each time the recorded certificates change.
// (API requests are checked one by one; new connections at the handshake.)
func (n *Node) dropRevokedLoop(ctx context.Context) {
	var last map[string]store.CertRecord
	for {
		st, changed := n.fsm.Watch()
		if !sameCerts(last, st.Certs) {
			last = st.Certs
			if k := n.mux.raftConns.closeIf(func(c *x509.Certificate) bool { ok, _ := n.accepts(st, c); return !ok }); k > 0 {
				n.log.Warn("closed Raft connections of certificates the fleet no longer accepts", "connections", k)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// sameCerts says whether a and b are the same published map (the store
// never modifies a published one).
func sameCerts(a, b map[string]store.CertRecord) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// recordLag bounds how long an API request with a certificate this agent
// does not accept waits for the record to arrive: a credential recorded a
// moment ago through the leader reaches a follower within milliseconds.
const recordLag = 2 * time.Second

// acceptsSoon is accepts, waiting up to recordLag for the state to change
// when the certificate is not accepted yet.
func (n *Node) acceptsSoon(ctx context.Context, cert *x509.Certificate) (bool, string) {
	deadline := time.NewTimer(recordLag)
	defer deadline.Stop()
	for {
		st, changed := n.fsm.Watch()
		ok, why := n.accepts(st, cert)
		if ok {
			return true, ""
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false, why
		case <-ctx.Done():
			return false, why
		}
	}
}

// DefaultCertRenewBefore is how long before it expires an agent renews its
// own certificate: a third of its life.
const DefaultCertRenewBefore = pki.CertValidity / 3

// certCheckInterval is how often an agent looks at its certificate's
// expiry.
const certCheckInterval = time.Hour

// certRenewLoop renews this agent's certificate once it expires within
// Config.CertRenewBefore: a new key, signed by the leader and recorded,
// written to the data dir and presented from the next connection on.
func (n *Node) certRenewLoop(ctx context.Context) {
	before := n.cfg.CertRenewBefore
	if before == 0 {
		before = DefaultCertRenewBefore
	}
	interval := min(certCheckInterval, max(before/4, time.Second))
	retry := time.Second
	for {
		wait := interval
		leaf := n.credentials().Live.Leaf()
		if time.Until(leaf.NotAfter) < before {
			var err error
			if addr, _ := n.raft.LeaderWithID(); addr == "" {
				err = errors.New("the fleet has no leader")
			} else {
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err = n.renewCert(rctx)
				cancel()
			}
			if err != nil {
				// Due: try again soon, backing off to the interval.
				n.log.Debug("could not renew this agent's certificate yet; will retry", "expires", leaf.NotAfter, "err", err)
				wait, retry = min(retry, interval), min(2*retry, interval)
			} else {
				retry = time.Second
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// renewCert gets and installs a new certificate for this agent.
func (n *Node) renewCert(ctx context.Context) error {
	old := n.credentials()
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, n.cfg.Name)
	if err != nil {
		return err
	}
	cl, err := client.NewClient(n.cfg.Advertise, old, n.cfg.Name)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.RenewCert(ctx, client.RenewRequest{CSR: string(csr)})
	if err != nil {
		return err
	}
	next := pki.Credentials{CACertPEM: old.CACertPEM, CertPEM: []byte(res.Cert), KeyPEM: keyPEM}
	if id, err := next.Identity(); err != nil || id.Role != pki.RoleNode || id.Name != n.cfg.Name {
		return fmt.Errorf("the leader sent a certificate that does not fit (%v, %v)", id, err)
	}
	if err := n.dir.writeRenewed(next); err != nil {
		return err
	}
	if err := old.Live.Set(next); err != nil {
		return err
	}
	next.Live = old.Live
	n.credsMu.Lock()
	n.creds = next
	n.credsMu.Unlock()
	cert, _ := parseCertPEM(next.CertPEM)
	n.log.Info("renewed this agent's certificate", "expires", cert.NotAfter)
	return nil
}

// handleRenewCert signs a new certificate for the calling agent, records
// it and returns it. The old one stays accepted until it expires.
func (n *Node) handleRenewCert(w http.ResponseWriter, r *http.Request) {
	var req client.RenewRequest
	if !readJSON(w, r, &req) {
		return
	}
	id := identityOf(r)
	addr, err := n.memberAddr(id.Name)
	if err != nil {
		writeError(w, http.StatusForbidden, &client.APIError{Code: client.CodeForbidden, Message: err.Error()})
		return
	}
	certPEM, cert, ok := n.signNode(w, req.CSR, id.Name, addr, userOf(r))
	if !ok {
		return
	}
	n.log.Info("renewed a node certificate", "name", id.Name, "expires", cert.NotAfter)
	writeJSON(w, http.StatusOK, client.RenewResponse{Cert: string(certPEM)})
}

// certWarnDays is how long before a certificate or the CA expires status
// warns.
const certWarnDays = 30

// certWarnings says which certificates the fleet accepts, and the CA,
// expire within certWarnDays of now.
func certWarnings(st *store.State, ca *x509.Certificate, now time.Time) []string {
	soon := now.Add(certWarnDays * 24 * time.Hour)
	var out []string
	if ca != nil && ca.NotAfter.Before(soon) {
		out = append(out, fmt.Sprintf("the fleet's CA expires %s (in %s): see docs/operations.md on CA rotation", ca.NotAfter.UTC().Format(time.DateOnly), roundDays(ca.NotAfter.Sub(now))))
	}
	// A renewed certificate's predecessor is no cause for alarm, nor is
	// the CLI's own credential on an appliance, which it renews when it
	// next runs there (LocalAdmin).
	newest := map[string]time.Time{}
	for _, r := range st.Certs {
		if r.Role == string(pki.RoleAdmin) && strings.HasPrefix(r.Name, "local-") {
			continue
		}
		k := r.Role + ":" + r.Name
		if r.NotAfter.After(newest[k]) {
			newest[k] = r.NotAfter
		}
	}
	keys := slices.Sorted(maps.Keys(newest))
	for _, k := range keys {
		if t := newest[k]; t.Before(soon) {
			out = append(out, fmt.Sprintf("the certificate of %s expires %s (in %s)", k, t.UTC().Format(time.DateOnly), roundDays(t.Sub(now))))
		}
	}
	return out
}

func roundDays(d time.Duration) string {
	if d < 0 {
		return "the past: it has expired"
	}
	if d < 48*time.Hour {
		return d.Round(time.Hour).String()
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// signNode signs a node certificate for name at address from csr and
// records it as issued by by; on failure it has answered w.
func (n *Node) signNode(w http.ResponseWriter, csr, name, address, by string) ([]byte, *x509.Certificate, bool) {
	certPEM, err := n.ca.SignCSR([]byte(csr), name, pki.RoleNode, []string{hostOf(address)})
	if err != nil {
		writeError(w, http.StatusBadRequest, &client.APIError{Code: client.CodeBadRequest, Message: "certificate request: " + err.Error()})
		return nil, nil, false
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		writeError(w, http.StatusInternalServerError, &client.APIError{Code: client.CodeInternal, Message: err.Error()})
		return nil, nil, false
	}
	rec, err := certRecord(cert, by, time.Now())
	if err == nil {
		_, err = n.apply(store.CmdRecordCert, rec)
	}
	if err != nil {
		writeApplyError(w, err)
		return nil, nil, false
	}
	return certPEM, cert, true
}
