package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/store"
)

// Recovering from quorum loss (`fleetctl agent --recover --survivors …`):
// when a majority of the fleet's voters is gone for good, Raft cannot
// commit anything, not even the removal of the dead members. Recover
// rewrites the stopped agent's Raft configuration to the survivors with
// hashicorp/raft's RecoverCluster, on the agent's own log, stable and
// snapshot stores, as Consul's peers.json does: the replicated state
// (spec, certificates, trails, failover state) is kept, and the survivors
// form the fleet when started. The decisions are pure (planRecovery,
// quorumReachable, decideRecoveryCleanup); Recover and finishRecovery are
// their edges.

// Errors Recover returns when it refuses; nothing is changed then. Callers
// compare them with errors.Is.
var (
	// ErrQuorumReachable says a majority of the fleet's voters answered:
	// the fleet has not lost its quorum, and recovery would split it.
	ErrQuorumReachable = errors.New("a quorum of the fleet is reachable")
	// ErrBadSurvivors says the survivors given are not a set recovery can
	// make a fleet of: empty, naming non-members, or leaving out this
	// agent.
	ErrBadSurvivors = errors.New("bad survivors")
	// ErrNothingToRecover says the data dir holds no fleet: no identity or
	// no Raft state.
	ErrNothingToRecover = errors.New("nothing to recover")
)

// RecoverProbeTimeout bounds how long Recover waits for each other member
// of the last known configuration to answer.
const RecoverProbeTimeout = 3 * time.Second

// fileRecovery records a recovery in the data dir until the agent, once
// it leads, has forgotten what the dropped members held (finishRecovery).
const fileRecovery = "recovery.json"

// RecoverConfig says what to recover.
type RecoverConfig struct {
	// DataDir is the stopped agent's data dir; the caller holds its lock
	// (fence.LockAgent), so no agent runs on it meanwhile.
	DataDir string
	// Survivors are the member names that form the fleet after recovery;
	// they must include this agent.
	Survivors []string
	// ProbeTimeout bounds each member's answer; RecoverProbeTimeout when
	// zero.
	ProbeTimeout time.Duration
	// Logger receives what Raft logs while recovering; slog.Default when
	// nil.
	Logger *slog.Logger
}

// Recovery is what Recover did, or found when it refused.
type Recovery struct {
	// Name is this agent's member name.
	Name string
	// Before is the last configuration this agent knew, After the one it
	// wrote (empty when it refused).
	Before, After raft.Configuration
	// Dropped are the members Before has and After has not.
	Dropped []string
	// Answered are the other members of Before that answered, by name.
	Answered []string
	// Voters is how many voters Before has, Up how many of them answered
	// (this agent counted when it is one), Quorum how many make a quorum.
	Voters, Up, Quorum int
	// Generation is the spec generation of the recovered state.
	Generation uint64
	// At is when the recovery was made.
	At time.Time
}

// recoveryRecord is fileRecovery's content.
type recoveryRecord struct {
	At        time.Time `json:"at"`
	Survivors []string  `json:"survivors"`
	Dropped   []string  `json:"dropped"`
}

// Recover rewrites the Raft configuration in the data dir of a stopped
// agent to the survivors, after checking that they are members, that they
// include this agent, and that no quorum of the last known configuration
// answers over the fleet's mutual TLS. The agent is not started: the
// caller tells the operator to start it. When it refuses it returns one of
// the errors above, and the Recovery with what it found, and changes
// nothing.
func Recover(ctx context.Context, cfg RecoverConfig) (*Recovery, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = RecoverProbeTimeout
	}
	d := dataDir(cfg.DataDir)
	id, err := d.readIdentity()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s holds no agent's identity: it never joined a fleet", ErrNothingToRecover, cfg.DataDir)
	}
	if err != nil {
		return nil, err
	}
	rec := &Recovery{Name: id.Name}
	switch db, err := d.checkRaftDB(); {
	case err != nil:
		return nil, raftDBAdvice(err, id.Name)
	case db != raftDBSound:
		return nil, fmt.Errorf("%w: %s holds no Raft state (raft.db is missing or empty)", ErrNothingToRecover, cfg.DataDir)
	}
	creds, _, _, err := d.readCredentials()
	if err != nil {
		return nil, err
	}

	bolt, err := raftboltdb.New(raftboltdb.Options{Path: d.path(fileRaftDB)})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.path(fileRaftDB), err)
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(d.path(dirSnapshots), 3, hclogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if has, err := raft.HasExistingState(bolt, bolt, snaps); err != nil {
		return nil, fmt.Errorf("read the Raft state in %s: %w", cfg.DataDir, err)
	} else if !has {
		return nil, fmt.Errorf("%w: %s holds no Raft state", ErrNothingToRecover, cfg.DataDir)
	}
	quiet := slog.New(slog.DiscardHandler)
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id.Advertise))
	defer trans.Close()
	rec.Before, err = raft.GetConfiguration(recoverRaftConfig(id.Name, cfg.Logger), store.NewFSM(quiet), bolt, bolt, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("read the last Raft configuration in %s: %w", cfg.DataDir, err)
	}

	after, dropped, err := planRecovery(rec.Before, id.Name, cfg.Survivors)
	if err != nil {
		return rec, err
	}
	answered := probeMembers(ctx, creds, rec.Before, id.Name, cfg.ProbeTimeout)
	for _, s := range rec.Before.Servers {
		if answered[s.ID] {
			rec.Answered = append(rec.Answered, string(s.ID))
		}
	}
	slices.Sort(rec.Answered)
	var reachable bool
	reachable, rec.Voters, rec.Up = quorumReachable(rec.Before, id.Name, answered)
	rec.Quorum = rec.Voters/2 + 1
	if reachable {
		return rec, fmt.Errorf("%w: %d of its %d voters answer (%s), and a quorum needs %d", ErrQuorumReachable, rec.Up, rec.Voters, upNames(rec.Before, id.Name, answered), rec.Quorum)
	}

	fsm := store.NewFSM(quiet)
	if err := raft.RecoverCluster(recoverRaftConfig(id.Name, cfg.Logger), fsm, bolt, bolt, snaps, trans, after); err != nil {
		return rec, fmt.Errorf("rewrite the Raft configuration in %s: %w", cfg.DataDir, err)
	}
	rec.After, rec.Dropped, rec.Generation, rec.At = after, dropped, fsm.State().Generation, time.Now().UTC()
	b, err := json.MarshalIndent(recoveryRecord{At: rec.At, Survivors: serverNames(after.Servers), Dropped: dropped}, "", "  ")
	if err != nil {
		return rec, err
	}
	if err := pki.WriteFile(d.path(fileRecovery), append(b, '\n')); err != nil {
		return rec, fmt.Errorf("the configuration is recovered, but recording the dropped members failed (the leader forgets their certificates within %s anyway): %w", joinWindow, err)
	}
	return rec, nil
}

// recoverRaftConfig is the Raft configuration Recover reads and writes
// the stores with: the library's defaults, as the agent runs.
func recoverRaftConfig(name string, log *slog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(name)
	rc.Logger = hclogger(log)
	return rc
}

// planRecovery returns the configuration recovery writes from the last
// known one, before: the survivors, each a voter at its recorded address,
// in before's order, and the members it drops. Every survivor is a voter
// so that the election among them picks the most up-to-date log (a
// non-voter's is never counted); a fleet of two survivors keeps an even
// number of voters until the next join makes it three. It refuses
// (ErrBadSurvivors) an empty list, a name that is not a member, a list
// without self, and survivors that are a majority of before's voters:
// they have a quorum, and need only be started.
func planRecovery(before raft.Configuration, self string, survivors []string) (raft.Configuration, []string, error) {
	want := map[string]bool{}
	for _, s := range survivors {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	members := serverNames(before.Servers)
	if len(want) == 0 {
		return raft.Configuration{}, nil, fmt.Errorf("%w: name the surviving members with --survivors (this agent is %s; the members are %s)", ErrBadSurvivors, self, strings.Join(members, ", "))
	}
	var unknown []string
	for s := range want {
		if !slices.Contains(members, s) {
			unknown = append(unknown, s)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		verb := "is not a member"
		if len(unknown) > 1 {
			verb = "are not members"
		}
		return raft.Configuration{}, nil, fmt.Errorf("%w: %s %s of the fleet (its members are %s)", ErrBadSurvivors, strings.Join(unknown, ", "), verb, strings.Join(members, ", "))
	}
	if !want[self] {
		return raft.Configuration{}, nil, fmt.Errorf("%w: the survivors must include this agent, %s: run the recovery on each survivor, every one with the same --survivors", ErrBadSurvivors, self)
	}
	var voters, surviving []string
	for _, s := range before.Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
			if want[string(s.ID)] {
				surviving = append(surviving, string(s.ID))
			}
		}
	}
	if len(surviving) > len(voters)/2 {
		slices.Sort(surviving)
		return raft.Configuration{}, nil, fmt.Errorf("%w: %s are %d of the fleet's %d voters, a quorum: start their agents as they were, and remove the members lost for good with 'fleetctl members remove --force NAME'", ErrBadSurvivors, strings.Join(surviving, ", "), len(surviving), len(voters))
	}
	var after raft.Configuration
	var dropped []string
	for _, s := range before.Servers {
		if want[string(s.ID)] {
			after.Servers = append(after.Servers, raft.Server{ID: s.ID, Address: s.Address, Suffrage: raft.Voter})
		} else {
			dropped = append(dropped, string(s.ID))
		}
	}
	slices.Sort(dropped)
	return after, dropped, nil
}

// quorumReachable says whether a majority of config's voters answers:
// self (when it is a voter) and those answered says did. It returns the
// number of voters and of those that answer.
func quorumReachable(config raft.Configuration, self string, answered map[raft.ServerID]bool) (reachable bool, voters, up int) {
	for _, s := range config.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == self || answered[s.ID] {
			up++
		}
	}
	return up > voters/2, voters, up
}

// upNames names the voters quorumReachable counted.
func upNames(config raft.Configuration, self string, answered map[raft.ServerID]bool) string {
	var out []string
	for _, s := range config.Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != self && answered[s.ID] {
			out = append(out, string(s.ID))
		}
	}
	slices.Sort(out)
	if slices.ContainsFunc(config.Servers, func(s raft.Server) bool { return string(s.ID) == self && s.Suffrage == raft.Voter }) {
		out = append([]string{self + " (this agent)"}, out...)
	}
	return strings.Join(out, ", ")
}

// serverNames returns the servers' IDs, sorted (messages name members
// in the same order whatever order they joined in).
func serverNames(servers []raft.Server) []string {
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		out = append(out, string(s.ID))
	}
	slices.Sort(out)
	return out
}

// probeMembers asks every member of config but self, at once, to answer
// a TLS handshake at its recorded address with a certificate of the fleet
// that names it, each within timeout. A member that does is alive, even if
// it no longer accepts this agent's certificate (which it checks only
// after the handshake): its agent runs, so its fleet may have a quorum.
func probeMembers(ctx context.Context, creds pki.Credentials, config raft.Configuration, self string, timeout time.Duration) map[raft.ServerID]bool {
	out := map[raft.ServerID]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range config.Servers {
		if string(s.ID) == self {
			continue
		}
		wg.Go(func() {
			ok := probeMember(ctx, creds, string(s.ID), string(s.Address), timeout)
			mu.Lock()
			out[s.ID] = ok
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// probeMember says whether the member name answers at addr (probeMembers).
func probeMember(ctx context.Context, creds pki.Credentials, name, addr string, timeout time.Duration) bool {
	conf, err := pki.ClientConfig(creds, name, []string{client.ProtoAPI})
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: conf}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// readRecovery reads the data dir's recovery record; ok is false when
// there is none.
func (d dataDir) readRecovery() (rec recoveryRecord, ok bool, err error) {
	b, err := pki.ReadFile(d.path(fileRecovery))
	if errors.Is(err, fs.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, false, fmt.Errorf("%s: %w", d.path(fileRecovery), err)
	}
	return rec, true, nil
}

// recoveryCleanup is what the leader still has to forget after a
// recovery: the certificates of the dropped members (their node
// certificates and the CLI credential kept on them, local-NAME) recorded
// before the recovery, and the join tokens made before it, which the
// dropped appliances may hold. What was recorded or made after the
// recovery (a replacement appliance joining under a dropped name) is kept.
type recoveryCleanup struct {
	Certs  []store.ForgetCerts
	Tokens []string
}

// empty says there is nothing left to forget.
func (c recoveryCleanup) empty() bool { return len(c.Certs) == 0 && len(c.Tokens) == 0 }

// decideRecoveryCleanup decides recoveryCleanup from the state, the
// record and the current members (a dropped name that is a member again
// keeps its certificates).
func decideRecoveryCleanup(st *store.State, rec recoveryRecord, members map[string]bool, by string, now time.Time) recoveryCleanup {
	var c recoveryCleanup
	names := map[string]pki.Role{}
	for _, name := range rec.Dropped {
		if members[name] {
			continue
		}
		names[name] = pki.RoleNode
		names[localAdminName(name)] = pki.RoleAdmin
	}
	for fp, r := range st.Certs {
		if role, ok := names[r.Name]; ok && r.Role == string(role) && r.IssuedAt.Before(rec.At) {
			c.Certs = append(c.Certs, store.ForgetCerts{Role: r.Role, Name: r.Name, Fingerprint: fp, By: by, Reason: "recovered from quorum loss without " + r.Name, At: now.UTC()})
		}
	}
	slices.SortFunc(c.Certs, func(a, b store.ForgetCerts) int {
		return strings.Compare(a.Name+a.Fingerprint, b.Name+b.Fingerprint)
	})
	for id, t := range st.Tokens {
		if t.CreatedAt.Before(rec.At) {
			c.Tokens = append(c.Tokens, id)
		}
	}
	slices.Sort(c.Tokens)
	return c
}

// finishRecovery runs when the data dir holds a recovery record: once
// this agent leads, it forgets what the dropped members held
// (decideRecoveryCleanup), writes the recovery to the witness log and
// removes the record. A survivor that does not lead removes its record
// once the leader has done it. It retries every second until done or ctx
// ends.
func (n *Node) finishRecovery(ctx context.Context, rec recoveryRecord) {
	for {
		done, err := n.finishRecoveryOnce(rec)
		if err != nil {
			n.log.Warn("could not finish the recovery from quorum loss yet; retrying", "err", err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (n *Node) finishRecoveryOnce(rec recoveryRecord) (done bool, err error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, err
	}
	members := map[string]bool{}
	for _, s := range f.Configuration().Servers {
		members[string(s.ID)] = true
	}
	by := "node:" + n.cfg.Name
	c := decideRecoveryCleanup(n.fsm.State(), rec, members, by, time.Now())
	leads := n.raft.State() == raft.Leader && n.leaderReady.Load()
	if !leads {
		if !c.empty() {
			return false, nil
		}
		return true, n.removeRecoveryRecord()
	}
	for _, fc := range c.Certs {
		if _, err := n.apply(store.CmdForgetCerts, fc); err != nil {
			return false, fmt.Errorf("forget %s's certificate %s: %w", fc.Name, fc.Fingerprint, err)
		}
	}
	if len(c.Tokens) > 0 {
		if _, err := n.apply(store.CmdJoinTokens, store.JoinTokenChange{Revoke: c.Tokens, At: time.Now().UTC()}); err != nil {
			return false, fmt.Errorf("revoke the join tokens made before the recovery: %w", err)
		}
	}
	detail := fmt.Sprintf("fleetctl agent --recover at %s kept %s and dropped %s; forgot %s of theirs and revoked %s made before the recovery",
		rec.At.Format(time.RFC3339), strings.Join(rec.Survivors, ", "), strings.Join(rec.Dropped, ", "), count(len(c.Certs), "certificate"), count(len(c.Tokens), "join token"))
	if err := n.writeWitnessEvent(store.WitnessEvent{At: time.Now().UTC(), Member: n.cfg.Name, Event: store.EventQuorumRecovered, Detail: detail}); err != nil {
		return false, fmt.Errorf("write the recovery to the witness log: %w", err)
	}
	n.log.Warn("finished the recovery from quorum loss", "survivors", rec.Survivors, "dropped", rec.Dropped, "certificates_forgotten", len(c.Certs), "tokens_revoked", len(c.Tokens))
	return true, n.removeRecoveryRecord()
}

// count says "1 thing" or "n things".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func (n *Node) removeRecoveryRecord() error {
	if err := os.Remove(n.dir.path(fileRecovery)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", n.dir.path(fileRecovery), err)
	}
	return nil
}
