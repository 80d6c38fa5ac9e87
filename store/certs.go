package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// The fleet accepts a certificate only if it is recorded here, on top of
// being signed by the fleet's CA. Every member holds the CA key (any voter
// may lead and sign the next join), so a member removed from the fleet
// keeps a key that can sign new certificates; recording every certificate
// the fleet hands out, and forgetting those of a removed member or a
// revoked admin, is what keeps them out. See docs/design.md, "Who may do
// what".

// CertRecord is a certificate the fleet accepts: the body of
// CmdRecordCert (version 1).
type CertRecord struct {
	// Fingerprint is the hex SHA-256 of the certificate's DER.
	Fingerprint string `json:"fingerprint"`
	// Role is "node" or "admin"; Name the appliance or the admin user.
	Role string `json:"role"`
	Name string `json:"name"`
	// Serial is the certificate's serial number, in hex, for people.
	Serial string `json:"serial"`
	// NotAfter is when the certificate expires; the record is dropped
	// once a later command sees it expired.
	NotAfter time.Time `json:"not_after"`
	// IssuedAt is when it was recorded (the proposer's clock) and IssuedBy
	// who asked for it.
	IssuedAt time.Time `json:"issued_at"`
	IssuedBy string    `json:"issued_by"`
}

// ForgetCerts takes back the certificates of one identity: the body of
// CmdForgetCerts (version 1).
type ForgetCerts struct {
	Role string `json:"role"`
	Name string `json:"name"`
	// Fingerprint, when set, forgets only that certificate; otherwise
	// every certificate of the identity.
	Fingerprint string `json:"fingerprint,omitempty"`
	// By names who revoked, Reason why, At when (the proposer's clock).
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// JoinToken is a join token as the fleet keeps it: never the secret, only
// its hash, so the replicated state holds nothing that joins.
type JoinToken struct {
	// ID names the token: the first bytes of its secret's hash, in hex.
	ID string `json:"id"`
	// SecretHash is the hex SHA-256 of the token's secret.
	SecretHash string `json:"secret_hash"`
	// Expires is when it stops working.
	Expires time.Time `json:"expires"`
	// CreatedAt and CreatedBy say when and by whom it was made.
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// Description says what it is for, if the creator said.
	Description string `json:"description,omitempty"`
}

// JoinTokenChange is the body of CmdJoinTokens (version 1): add a token,
// revoke some, or both. Expired tokens are dropped at every change.
type JoinTokenChange struct {
	Create *JoinToken `json:"create,omitempty"`
	// Revoke lists token IDs to revoke; "*" revokes every token.
	Revoke []string `json:"revoke,omitempty"`
	// At is when the proposer decided (Apply must not read the clock).
	At time.Time `json:"at"`
}

// Accepts says whether the certificate with this fingerprint is recorded
// for role and name.
func (s *State) Accepts(role, name, fingerprint string) bool {
	r, ok := s.Certs[fingerprint]
	return ok && r.Role == role && r.Name == name
}

// HasCerts says whether any certificate is recorded for role and name.
func (s *State) HasCerts(role, name string) bool {
	for _, r := range s.Certs {
		if r.Role == role && r.Name == name {
			return true
		}
	}
	return false
}

func recordCertV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var cmd CertRecord
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdRecordCert, err)
	}
	if cmd.Fingerprint == "" || cmd.Role == "" || cmd.Name == "" {
		return nil, fmt.Errorf("%v: a fingerprint, a role and a name are needed", CmdRecordCert)
	}
	certs := make(map[string]CertRecord, len(cur.Certs)+1)
	for fp, r := range cur.Certs {
		if r.NotAfter.After(cmd.IssuedAt) {
			certs[fp] = r
		}
	}
	certs[cmd.Fingerprint] = cmd
	next := *cur
	next.Certs = certs
	return &next, nil
}

func forgetCertsV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var cmd ForgetCerts
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdForgetCerts, err)
	}
	if cmd.Role == "" || cmd.Name == "" {
		return nil, fmt.Errorf("%v: a role and a name are needed", CmdForgetCerts)
	}
	certs := make(map[string]CertRecord, len(cur.Certs))
	forgotten := 0
	for fp, r := range cur.Certs {
		if r.Role == cmd.Role && r.Name == cmd.Name && (cmd.Fingerprint == "" || cmd.Fingerprint == fp) {
			forgotten++
			continue
		}
		certs[fp] = r
	}
	if forgotten == 0 {
		return nil, 0
	}
	next := *cur
	next.Certs = certs
	return &next, forgotten
}

func joinTokensV1(_ *FSM, cur *State, body []byte) (*State, any) {
	var cmd JoinTokenChange
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, fmt.Errorf("decode %v command: %w", CmdJoinTokens, err)
	}
	tokens := make(map[string]JoinToken, len(cur.Tokens)+1)
	maps.Copy(tokens, cur.Tokens)
	for id, t := range tokens {
		if !t.Expires.After(cmd.At) {
			delete(tokens, id)
		}
	}
	for _, id := range cmd.Revoke {
		if id == "*" {
			clear(tokens)
		}
		delete(tokens, id)
	}
	if cmd.Create != nil {
		if cmd.Create.ID == "" || cmd.Create.SecretHash == "" {
			return nil, fmt.Errorf("%v: a new token needs an ID and a secret hash", CmdJoinTokens)
		}
		tokens[cmd.Create.ID] = *cmd.Create
	}
	next := *cur
	next.Tokens = tokens
	return &next, nil
}
