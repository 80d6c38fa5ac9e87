package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/fleetctl/fleetctl/agent/fence"
	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// Config says how to start an agent's node.
type Config struct {
	// Name is the appliance's name; it is the Raft server ID and the name in
	// the node's certificate.
	Name string
	// DataDir holds the node's identity, credentials and Raft state.
	DataDir string
	// Listen is the host:port to listen on for Raft and the API.
	Listen string
	// Advertise is the host:port other members reach this node at; Listen
	// when empty.
	Advertise string
	// Bootstrap makes a new fleet with this node as its only member, when
	// the data dir holds no state yet.
	Bootstrap bool
	// CertRenewBefore is how long before its certificate expires the
	// agent renews it; DefaultCertRenewBefore when zero.
	CertRenewBefore time.Duration
	// Fleet is the fleet's name for a bootstrap, as the spec's fleet:
	// gives it; it names the CA. schema.DefaultFleet when empty.
	Fleet string
	// Join is the address of any member, and Token the join token, for a
	// node whose data dir holds no state yet.
	Join, Token string
	// MaxVoters is how many voters the fleet keeps; members beyond join as
	// non-voters. DefaultMaxVoters when zero.
	MaxVoters int
	// Logger receives the node's logs; slog.Default when nil.
	Logger *slog.Logger
	// Driver speaks to this appliance's btrfs. With a driver the node runs
	// the reconcile loop and answers plan requests; without, it only
	// stores the spec (a witness needs none).
	Driver reconcile.Driver
	// ReconcileInterval is the time between reconcile runs when the spec
	// does not change; DefaultReconcileInterval when zero.
	ReconcileInterval time.Duration
	// Guard, when set, is this agent's guard process (package fence):
	// it is told every fence.BeatInterval which shares the agent holds
	// writable and how long its lease holds, and told before a share
	// becomes writable.
	Guard Guard
	// AcceptEmptyRaftDB starts the node on an empty raft.db in a data dir
	// whose agent was a member (it has an identity), as the member it
	// was: its Raft term, vote and log are lost. Start refuses without it.
	AcceptEmptyRaftDB bool
	// MetricsListen, when set, is a loopback host:port where GET /metrics
	// is also served in plain HTTP, for a scraper on this appliance (the
	// API port serves it over mutual TLS). Start refuses any other
	// address (ErrMetricsNotLoopback).
	MetricsListen string
}

// Guard is what the node needs of its guard process: Beat never blocks,
// Announce returns once the guard has the beat (or fails, and then the
// node does not go on).
type Guard interface {
	Beat(fence.Heartbeat)
	Announce(fence.Heartbeat) error
}

// DefaultReconcileInterval is how often an agent looks for drift (a share
// deleted or a quota changed by hand) when the spec does not change.
const DefaultReconcileInterval = 30 * time.Second

// raftCommitTimeout is how long the leader waits without a new entry
// before it sends each member an AppendEntries anyway (raft's
// CommitTimeout, randomized up to twice that). That send is how a member
// learns that the entries it holds are committed, and so when it applies
// them: a member applies an entry 0.2-0.4 s after the leader instead of
// raft's default 0.05-0.1 s. Idle, it is the leader's largest cost per
// member (one TLS write and read, a log lookup and a metric each time;
// heartbeats, every 0.1-0.2 s, do not carry the commit index). A
// leader's own applies, its VerifyLeader rounds and elections do not
// depend on it.
const raftCommitTimeout = 200 * time.Millisecond

// raftLogCache is how many of the newest Raft log entries an agent keeps
// in memory in front of raft.db (as Consul does, 512).
const raftLogCache = 512

// DefaultMaxVoters keeps the quorum small, as the design says: five voters
// survive two failures; more only slow every commit.
const DefaultMaxVoters = 5

// Node is one running agent's member of the fleet's Raft group, with the
// API it serves on the same port.
type Node struct {
	cfg Config
	log *slog.Logger
	dir dataDir
	// creds are this agent's credentials; read them with credentials().
	// Their Live certificate is what TLS presents; certificate renewal
	// (certs.go) replaces both.
	credsMu sync.RWMutex
	creds   pki.Credentials
	ca      *pki.CA
	token   pki.Token

	fsm   *store.FSM
	raft  *raft.Raft
	trans *raft.NetworkTransport
	store *raftboltdb.BoltStore
	mux   *mux
	api   *http.Server

	// replicator sends this appliance's replicated shares; receiver takes
	// the shares replicated to it. Nil without a Driver.
	replicator *reconcile.Replicator
	// reconciler is the reconcile loop (nil without a driver); Hold
	// keeps it still while a share is swapped in place.
	reconciler atomic.Pointer[reconcile.Loop]
	// restoreTickets are the streams of copies this agent will take for
	// restores onto it (restoreon.go).
	restoreTickets restoreTickets
	receiver       *reconcile.Receiver

	// memberLock, a one-slot semaphore, is held by the leader's membership
	// change in progress (members.go): changes are planned and made one at
	// a time. A channel rather than a mutex so a waiting request can give up.
	memberLock chan struct{}

	// peers holds the pooled clients to other members (peers.go).
	peers peerPool

	// applyMu serializes the leader's applies from the hazard check to
	// the commit, so a spec is checked against the spec it replaces.
	applyMu sync.Mutex

	// leaderReady is true while this node leads and has applied every
	// entry of earlier terms (the Barrier after election has returned).
	leaderReady atomic.Bool
	stop        context.CancelFunc
	done        chan struct{}

	// wit is the witness's bookkeeping while this node leads (witness.go);
	// lease is this appliance's side of its lease (lease.go).
	wit witness
	// prior is the leader this agent last followed (witness.go).
	prior priorTracker
	// acks, rounds and reporter are the check rounds before a renewal is
	// answered and the reports to a new leader (witnessack.go).
	acks     ackBook
	rounds   ackRounds
	reporter reporter
	lease    leaseState
	// fresh says the data dir held no Raft state when the node started:
	// there is nothing stale to act on, so nothing to fence while the log
	// is replayed.
	fresh bool
	// stopping is set when Shutdown has fenced this agent's shares: the
	// door (openForWrite) stays shut after it.
	stopping atomic.Bool
	// leaseBlocked is a test seam: while it is set, the lease client fails
	// every renewal without sending it, as if the leader were unreachable.
	// Only tests set it.
	leaseBlocked atomic.Bool
	// loops are the node's long-running goroutines (witness, lease,
	// reconciler, replication, failback), which Shutdown waits for, so
	// that no btrfs command of this node runs after it returns.
	loops sync.WaitGroup

	// bootstrapToken says this run bootstrapped the fleet and has yet to
	// record the join token it wrote to the data dir.
	bootstrapToken atomic.Bool
	// tokenPending says this run's bootstrap join token is not in the
	// log yet: a join with it waits for the record (joinTokenState)
	// rather than being refused in the moment after the election.
	tokenPending atomic.Bool

	// metrics is the agent's Prometheus registry (metrics.go);
	// metricsSrv serves it on MetricsListen, at metricsAddr.
	metrics     *metrics
	metricsSrv  *http.Server
	metricsAddr string

	shutdownOnce sync.Once
	shutdownErr  error

	// statusMu serializes publishing this appliance's status; lastReport
	// is the reconciler's last report and publishedFenced the fenced
	// shares last published with it.
	statusMu        sync.Mutex
	lastReport      *reconcile.Report
	publishedFenced []string
}

// Start opens (or creates) the node's data dir, joins or bootstraps the fleet
// as configured, and serves Raft and the API until Shutdown.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxVoters == 0 {
		cfg.MaxVoters = DefaultMaxVoters
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.Listen
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = DefaultReconcileInterval
	}
	if cfg.MetricsListen != "" {
		if err := CheckMetricsListen(cfg.MetricsListen); err != nil {
			return nil, err
		}
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.Name), dir: dataDir(cfg.DataDir), done: make(chan struct{}), memberLock: make(chan struct{}, 1)}
	n.acks.since = time.Now()
	n.rounds.kick = make(chan struct{}, 1)
	metrics, err := newMetrics(n)
	if err != nil {
		return nil, err
	}
	n.metrics = metrics
	was, err := n.dir.ensure()
	if err != nil {
		return nil, err
	}
	if was != 0 {
		n.log.Warn(fmt.Sprintf("made the data dir private: it was mode %04o, now 0700", was), "data_dir", cfg.DataDir)
	}
	fresh, err := n.loadOrCreateIdentity(ctx)
	n.fresh = fresh
	if err != nil {
		return nil, err
	}
	n.log = cfg.Logger.With("node", n.cfg.Name) // the name may come from the data dir
	n.lease.synced = make(chan struct{})
	early := n.startFencesFromFiles(ctx)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if err := n.startRaft(ln); err != nil {
		ln.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go n.mux.serve()
	go func() {
		if err := n.api.Serve(&chanListener{m: n.mux, ch: n.mux.api, addr: ln.Addr()}); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error("API server stopped", "err", err)
		}
	}()
	go n.watchLeadership(runCtx)
	n.goLoop(func() { n.runWitness(runCtx) })
	n.goLoop(func() { n.recordSelfLoop(runCtx) })
	n.goLoop(func() { n.dropRevokedLoop(runCtx) })
	n.goLoop(func() { n.certRenewLoop(runCtx) })
	n.goLoop(func() { every(runCtx, sweepInterval, n.sweepCerts) })
	n.goLoop(func() { every(runCtx, sweepInterval, n.pruneState) })
	n.goLoop(func() {
		every(runCtx, priorSample, func() {
			n.notePrior()
			n.reportPrior(runCtx)
		})
	})
	n.goLoop(func() { n.ackLoop(runCtx) })
	n.startLease(runCtx, early)
	if rec, ok, err := n.dir.readRecovery(); err != nil {
		n.log.Warn("cannot read the record of a recovery from quorum loss; the leader forgets the dropped members' certificates later (sweepCerts)", "err", err)
	} else if ok {
		n.goLoop(func() { n.finishRecovery(runCtx, rec) })
	}

	if fresh && cfg.Bootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(cfg.Name), Address: raft.ServerAddress(cfg.Advertise), Suffrage: raft.Voter}}}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
			n.Shutdown()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		n.log.Info("bootstrapped a new fleet", "join_token_file", n.dir.path(fileToken), "join_token_ttl", DefaultTokenTTL)
		n.tokenPending.Store(true)
		n.bootstrapToken.Store(true)
	}
	if fresh && cfg.Join != "" {
		if err := n.addSelf(ctx); err != nil {
			n.Shutdown()
			return nil, err
		}
	}
	n.startReconciler(runCtx)
	n.startReplication(runCtx)
	n.goLoop(func() { n.failbackLoop(runCtx) })
	if cfg.MetricsListen != "" {
		if err := n.serveMetrics(); err != nil {
			n.Shutdown()
			return nil, err
		}
	}
	return n, nil
}

// loadOrCreateIdentity loads the node's credentials, or makes them: a new CA
// for a bootstrap, a certificate from a member for a join. fresh is true when
// the data dir held no Raft state before.
func (n *Node) loadOrCreateIdentity(ctx context.Context) (fresh bool, err error) {
	id, err := n.dir.readIdentity()
	switch {
	case err == nil:
		if n.cfg.Name != "" && id.Name != n.cfg.Name {
			return false, fmt.Errorf("data dir %s belongs to appliance %q, not %q", n.cfg.DataDir, id.Name, n.cfg.Name)
		}
		n.cfg.Name = id.Name
		if err := n.loadCredentials(); err != nil {
			return false, err
		}
		db, err := n.dir.checkRaftDB()
		if err != nil {
			return false, raftDBAdvice(err, id.Name)
		}
		if db == raftDBEmpty {
			if !n.cfg.AcceptEmptyRaftDB {
				return false, fmt.Errorf("%w: %s is empty, but this data dir's agent was a member of a fleet as %q: its Raft term, vote and log are gone, and starting without them could let it vote twice in one term. "+
					"Restore the data dir from a backup; or remove this appliance from the fleet ('fleetctl members remove %s' on another member) and start it again with an empty data dir and --join; "+
					"or, knowing the risk, start it with --accept-empty-raft-db", ErrRaftDBEmpty, n.dir.path(fileRaftDB), id.Name, id.Name)
			}
			// Neither a new fleet (--bootstrap) nor a join: the member
			// it was, which the leader sends the log to.
			n.log.Warn("raft.db is empty and --accept-empty-raft-db is given: starting as a member with no Raft term, vote or log; --bootstrap and --join are ignored", "file", n.dir.path(fileRaftDB))
			return false, nil
		}
		has, err := n.dir.hasRaftState()
		if err != nil {
			return false, err
		}
		if has && (n.cfg.Bootstrap || n.cfg.Join != "") {
			n.log.Info("data dir has Raft state: restarting as a member; --bootstrap and --join are ignored")
		}
		// An agent stopped between making its identity and joining or
		// bootstrapping Raft does the rest now.
		return !has && (n.cfg.Join != "" || n.cfg.Bootstrap), nil
	case !errors.Is(err, os.ErrNotExist):
		return false, err
	}
	if n.cfg.Name == "" {
		return false, errors.New("a new data dir needs --name")
	}
	// No identity, so no fleet to lose; but a raft.db left here is
	// opened all the same, and must not crash the agent.
	if _, err := n.dir.checkRaftDB(); err != nil {
		return false, raftDBAdvice(err, n.cfg.Name)
	}
	switch {
	case n.cfg.Bootstrap && n.cfg.Join != "":
		return false, errors.New("give either --bootstrap (a new fleet) or --join (an existing one), not both")
	case n.cfg.Bootstrap:
		err = n.createFleet()
	case n.cfg.Join != "":
		err = n.fetchCredentials(ctx)
	default:
		return false, fmt.Errorf("data dir %s is new: give --bootstrap to start a fleet, or --join ADDRESS --token-file FILE to join one", n.cfg.DataDir)
	}
	if err != nil {
		return false, err
	}
	if err := n.dir.writeIdentity(identity{Name: n.cfg.Name, Advertise: n.cfg.Advertise}); err != nil {
		return false, err
	}
	return true, nil
}

// raftDBAdvice adds what to do to checkRaftDB's error about a damaged
// raft.db.
func raftDBAdvice(err error, name string) error {
	if !errors.Is(err, ErrRaftDBDamaged) {
		return fmt.Errorf("read %s: %w", fileRaftDB, err)
	}
	return fmt.Errorf("%w: restore the data dir from a backup, or remove this appliance from the fleet ('fleetctl members remove %s' on another member) and start it again with an empty data dir and --join", err, name)
}

// createFleet makes the cluster CA, the join token and this node's
// certificate.
func (n *Node) createFleet() error {
	fleet := n.cfg.Fleet
	if fleet == "" {
		fleet = schema.DefaultFleet
	}
	ca, err := pki.NewCA(fleet)
	if err != nil {
		return err
	}
	token, err := pki.NewToken(ca.Cert)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Issue(n.cfg.Name, pki.RoleNode, []string{hostOf(n.cfg.Advertise)})
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := n.dir.writeCredentials(pki.Credentials{CACertPEM: ca.CertPEM, CertPEM: certPEM, KeyPEM: keyPEM}, caKey, token); err != nil {
		return err
	}
	return n.loadCredentials()
}

func (n *Node) loadCredentials() error {
	creds, caKey, token, err := n.dir.readCredentials()
	if err != nil {
		return err
	}
	ca, err := pki.LoadCA(creds.CACertPEM, caKey)
	if err != nil {
		return fmt.Errorf("load the cluster CA from %s: %w", n.cfg.DataDir, err)
	}
	live, err := pki.NewLiveCert(creds)
	if err != nil {
		return fmt.Errorf("credentials in %s: %w", n.cfg.DataDir, err)
	}
	creds.Live = live
	n.credsMu.Lock()
	n.creds, n.ca, n.token = creds, ca, token
	n.credsMu.Unlock()
	return nil
}

// credentials returns this agent's credentials as they are now.
func (n *Node) credentials() pki.Credentials {
	n.credsMu.RLock()
	defer n.credsMu.RUnlock()
	return n.creds
}

func (n *Node) startRaft(ln net.Listener) error {
	serverConf, err := pki.ServerConfig(n.credentials(), []string{protoRaft, client.ProtoAPI})
	if err != nil {
		return err
	}
	n.mux = newMux(ln, serverConf, n.acceptsConn, n.log)
	n.fsm = store.NewFSM(n.log)
	stream := &streamLayer{
		chanListener: chanListener{m: n.mux, ch: n.mux.raft, addr: advertiseAddr(n.cfg.Advertise)},
		creds:        n.credentials,
		nameOf:       n.memberName,
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hclogger(n.log),
	})
	n.store, err = raftboltdb.New(raftboltdb.Options{Path: n.dir.path(fileRaftDB)})
	if err != nil {
		return fmt.Errorf("open %s: %w", n.dir.path(fileRaftDB), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.dir.path(dirSnapshots), 3, hclogger(n.log))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	// The leader reads the entry before each member's next one for every
	// AppendEntries it sends, idle or not: from memory, not from bolt.
	logs, err := raft.NewLogCache(raftLogCache, n.store)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Name)
	rc.ShutdownOnRemove = false // a removed member stays up to say so; it can be re-added
	rc.Logger = hclogger(n.log)
	rc.CommitTimeout = raftCommitTimeout
	r, err := raft.NewRaft(rc, n.fsm, logs, n.store, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.api = &http.Server{Handler: n.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	return nil
}

// memberName returns the name of the member at addr in the current Raft
// configuration, or "" when no member has that address.
func (n *Node) memberName(addr raft.ServerAddress) string {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return ""
	}
	for _, s := range f.Configuration().Servers {
		if s.Address == addr {
			return string(s.ID)
		}
	}
	return ""
}

// watchLeadership runs a Barrier each time this node becomes leader, so it
// acts on state only after every entry of earlier terms is applied, and
// starts the witness's term (witness.go) then.
func (n *Node) watchLeadership(ctx context.Context) {
	defer close(n.done)
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-n.raft.LeaderCh():
			n.leaderReady.Store(false)
			n.wit.endTerm()
			if !leader {
				n.log.Info("lost leadership")
				continue
			}
			term := n.raft.CurrentTerm()
			n.log.Info("became leader; waiting for earlier entries to apply")
			if err := n.raft.Barrier(30 * time.Second).Error(); err != nil {
				n.log.Warn("barrier after election failed; not serving writes until the next election", "err", err)
				continue
			}
			// The new leader counts every appliance as renewed now (the
			// renewals went to the old leader's memory), but the old
			// leader from when it last heard from it.
			prior := n.prior.get()
			if prior.name == n.cfg.Name {
				prior = priorLeader{}
			}
			n.wit.startTerm(time.Now(), n.fsm.State(), prior, n.office(term))
			n.leaderReady.Store(true)
			n.log.Info("leader ready")
			if n.bootstrapToken.CompareAndSwap(true, false) {
				n.goLoop(n.recordBootstrapToken)
			}
		}
	}
}

// goLoop runs f in a goroutine that Shutdown waits for.
func (n *Node) goLoop(f func()) {
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		f()
	}()
}

// Name returns the node's appliance name.
func (n *Node) Name() string { return n.cfg.Name }

// FSM returns the node's copy of the replicated state.
func (n *Node) FSM() *store.FSM { return n.fsm }

// Shutdown stops serving, leaves Raft state on disk, and returns once
// everything is closed and every goroutine the node started has ended. A
// restarted agent comes back from its data dir. Calling it again returns
// what the first call returned.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() { n.shutdownErr = n.shutdown() })
	return n.shutdownErr
}

func (n *Node) shutdown() error {
	var errs []error
	if n.stop != nil {
		// Once stopped nothing renews this appliance's lease: its active
		// shares go read-only now, not when a guard or the quorum
		// notices. FenceActive shuts the door first, so nothing (the
		// fence loop, the reconciler, a switchover's rollback) makes
		// them writable again, and tells the guard nothing is writable.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.FenceActive(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
		n.stop()
		<-n.done
		n.loops.Wait()
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		// Raft leaves its transport open; closing it marks it shut down
		// before its listener goes.
		n.trans.Close()
	}
	if n.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.api.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if n.metricsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.metricsSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics server: %w", err))
		}
	}
	if n.mux != nil {
		n.mux.close()
	}
	n.peers.close()
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// hclogger adapts slog to the hclog.Logger Raft wants. Raft's own info
// chatter is dropped (hclog level Warn); its warnings and errors reach
// slog at their own level, with their fields as attributes and no second
// timestamp: hclog writes JSON lines, which slogWriter decodes.
func hclogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.Warn,
		Output:     slogWriter{l},
		JSONFormat: true,
	})
}

// slogWriter passes hclog's JSON lines to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(p, &line); err != nil {
		w.l.Warn(string(trimNewline(p))) // not JSON: pass it on as it is
		return len(p), nil
	}
	level := slog.LevelWarn
	switch line["@level"] {
	case "trace", "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "error":
		level = slog.LevelError
	}
	msg, _ := line["@message"].(string)
	if mod, ok := line["@module"].(string); ok && mod != "" {
		msg = mod + ": " + msg
	}
	attrs := make([]any, 0, 2*len(line))
	for _, k := range slices.Sorted(maps.Keys(line)) {
		if strings.HasPrefix(k, "@") {
			continue
		}
		attrs = append(attrs, k, line[k])
	}
	w.l.Log(context.Background(), level, msg, attrs...)
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// The files of a data dir.
const (
	fileIdentity = "identity.json"
	fileCACert   = "ca.crt"
	fileCAKey    = "ca.key"
	fileCert     = "node.crt"
	fileKey      = "node.key"
	fileToken    = "join-token"
	fileRaftDB   = "raft.db"
	fileFenced   = fence.FileFenced // the shares this appliance fenced (lease.go)
	dirSnapshots = "snapshots"
)

// dataDir is an agent's data directory.
type dataDir string

type identity struct {
	Name      string `json:"name"`
	Advertise string `json:"advertise"`
}

func (d dataDir) path(name string) string { return filepath.Join(string(d), name) }

// ensure makes the data dir, or makes an existing one private: it holds
// the CA key, so it is 0700 even when it was made beforehand with a wider
// mode. was is the mode it had when ensure changed it, else 0.
func (d dataDir) ensure() (was os.FileMode, err error) {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return 0, fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(string(d))
	if err != nil {
		return 0, fmt.Errorf("data dir: %w", err)
	}
	if fi.Mode().Perm() == 0o700 {
		return 0, nil
	}
	if err := os.Chmod(string(d), 0o700); err != nil {
		return 0, fmt.Errorf("data dir: make it private (mode 0700): %w", err)
	}
	return fi.Mode().Perm(), nil
}

func (d dataDir) readIdentity() (identity, error) {
	var id identity
	b, err := pki.ReadFile(d.path(fileIdentity))
	if err != nil {
		return id, err
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("%s: %w", d.path(fileIdentity), err)
	}
	return id, nil
}

func (d dataDir) writeIdentity(id identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFile(d.path(fileIdentity), append(b, '\n'))
}

func (d dataDir) hasRaftState() (bool, error) {
	if _, err := os.Stat(d.path(fileRaftDB)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: d.path(fileRaftDB)})
	if err != nil {
		return false, fmt.Errorf("open %s: %w", d.path(fileRaftDB), err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(d.path(dirSnapshots), 3, hclog.NewNullLogger())
	if err != nil {
		return false, err
	}
	return raft.HasExistingState(store, store, snaps)
}

func (d dataDir) writeCredentials(c pki.Credentials, caKey []byte, token pki.Token) error {
	for _, f := range []struct {
		name string
		data []byte
	}{
		{fileCACert, c.CACertPEM}, {fileCAKey, caKey}, {fileCert, c.CertPEM}, {fileKey, c.KeyPEM},
		{fileToken, []byte(token.String() + "\n")},
	} {
		if err := pki.WriteFile(d.path(f.name), f.data); err != nil {
			return err
		}
	}
	return nil
}

// fileRenewed holds a renewed certificate and its key while they replace
// node.crt and node.key: a crash between the two writes is finished at
// the next read.
const fileRenewed = "node-renewed.pem"

// writeRenewed replaces this node's certificate and key with c's.
func (d dataDir) writeRenewed(c pki.Credentials) error {
	if err := pki.WriteFile(d.path(fileRenewed), c.Bundle()); err != nil {
		return err
	}
	return d.finishRenewal()
}

// finishRenewal moves a renewed certificate and key into place, if one
// is waiting, and removes it.
func (d dataDir) finishRenewal() error {
	b, err := pki.ReadFile(d.path(fileRenewed))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	c, err := pki.ParseBundle(b)
	if err != nil {
		// Cut short before it was whole: the old pair is still in place.
		return os.Remove(d.path(fileRenewed))
	}
	if err := pki.WriteFile(d.path(fileKey), c.KeyPEM); err != nil {
		return err
	}
	if err := pki.WriteFile(d.path(fileCert), c.CertPEM); err != nil {
		return err
	}
	return os.Remove(d.path(fileRenewed))
}

func (d dataDir) readCredentials() (c pki.Credentials, caKey []byte, token pki.Token, err error) {
	if err := d.finishRenewal(); err != nil {
		return c, nil, token, fmt.Errorf("finish a certificate renewal: %w", err)
	}
	read := func(name string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = pki.ReadFile(d.path(name))
		return b
	}
	c.CACertPEM, caKey, c.CertPEM, c.KeyPEM = read(fileCACert), read(fileCAKey), read(fileCert), read(fileKey)
	tok := read(fileToken)
	if err != nil {
		return c, nil, token, fmt.Errorf("read credentials: %w", err)
	}
	token, err = pki.ParseToken(string(trimNewline(tok)))
	return c, caKey, token, err
}

// HasIdentity says whether dir is the data dir of an agent that has been
// bootstrapped or has joined a fleet (it holds the agent's identity): such
// an agent needs no join token.
func HasIdentity(dir string) bool {
	_, err := os.Stat(dataDir(dir).path(fileIdentity))
	return err == nil
}

// LoadClientCredentials reads the credentials and advertised address of the
// agent whose data dir is dir, for a CLI running on that appliance.
func LoadClientCredentials(dir string) (creds pki.Credentials, name, addr string, err error) {
	d := dataDir(dir)
	id, err := d.readIdentity()
	if err != nil {
		return creds, "", "", fmt.Errorf("no agent data in %s: %w", dir, err)
	}
	creds, _, _, err = d.readCredentials()
	return creds, id.Name, id.Advertise, err
}

// LocalAdminValidity is how long the admin credential the CLI keeps on
// an appliance (LocalAdmin) is valid; it is renewed a day before.
const LocalAdminValidity = 30 * 24 * time.Hour

// fileLocalAdmin is where LocalAdmin keeps it, in the data dir (0600).
const fileLocalAdmin = "local-admin.pem"

// LocalAdmin returns the admin credential of a CLI running on the
// appliance whose agent data dir is dir, with the agent's name and
// address. It is kept in the data dir; when there is none, or it expires
// within a day, a new one is signed with the CA key there (only root can
// read it, and whoever can already holds the fleet) and recorded with the
// fleet through the local agent, which must be running. Its name is
// local-<appliance>: the store records applies made this way as
// admin:local-nas1.
func LocalAdmin(ctx context.Context, dir string) (creds pki.Credentials, name, addr string, err error) {
	d := dataDir(dir)
	id, err := d.readIdentity()
	if err != nil {
		return creds, "", "", fmt.Errorf("no agent data in %s: %w", dir, err)
	}
	if b, err := pki.ReadFile(d.path(fileLocalAdmin)); err == nil {
		if c, err := pki.ParseBundle(b); err == nil {
			if cert, err := parseCertPEM(c.CertPEM); err == nil && time.Until(cert.NotAfter) > 24*time.Hour {
				return c, id.Name, id.Advertise, nil
			}
		}
	}
	node, caKey, _, err := d.readCredentials()
	if err != nil {
		return creds, "", "", err
	}
	if len(caKey) == 0 {
		return creds, "", "", fmt.Errorf("%s holds no CA key, so the CLI cannot act as an admin here; use --credential with an admin credential", dir)
	}
	ca, err := pki.LoadCA(node.CACertPEM, caKey)
	if err != nil {
		return creds, "", "", err
	}
	certPEM, keyPEM, err := ca.IssueFor(localAdminName(id.Name), pki.RoleAdmin, nil, LocalAdminValidity)
	if err != nil {
		return creds, "", "", err
	}
	if err := recordAdminCert(ctx, node, id.Name, id.Advertise, certPEM); err != nil {
		return creds, "", "", err
	}
	creds = pki.Credentials{CACertPEM: node.CACertPEM, CertPEM: certPEM, KeyPEM: keyPEM}
	if err := pki.WriteFile(d.path(fileLocalAdmin), creds.Bundle()); err != nil {
		return creds, "", "", fmt.Errorf("keep the local admin credential: %w", err)
	}
	return creds, id.Name, id.Advertise, nil
}

// recordAdminCert has the fleet accept an admin certificate, through the
// agent name at addr with that agent's own node credentials.
func recordAdminCert(ctx context.Context, node pki.Credentials, name, addr string, certPEM []byte) error {
	cl, err := client.NewClient(addr, node, name)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.RecordCert(ctx, certPEM)
	if err != nil {
		return fmt.Errorf("record the admin certificate with the fleet through the agent at %s (it must be running and the fleet must have a leader): %w", addr, err)
	}
	// The leader recorded it; wait until this agent has applied the
	// record too, so the credential works here at once.
	for {
		certs, err := cl.Certs(ctx)
		if err == nil && slices.ContainsFunc(certs, func(c client.CertInfo) bool { return c.Fingerprint == info.Fingerprint }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agent at %s did not apply the record of the admin certificate: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// IssueAdminCredential makes a credential bundle (CA certificate, admin
// certificate and key) for a CLI user named name, signed by the CA in the
// agent data dir dir, and has the fleet accept it through that agent.
func IssueAdminCredential(ctx context.Context, dir, name string) ([]byte, error) {
	d := dataDir(dir)
	id, err := d.readIdentity()
	if err != nil {
		return nil, fmt.Errorf("no agent data in %s: %w", dir, err)
	}
	creds, caKey, _, err := d.readCredentials()
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadCA(creds.CACertPEM, caKey)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Issue(name, pki.RoleAdmin, nil)
	if err != nil {
		return nil, err
	}
	if err := recordAdminCert(ctx, creds, id.Name, id.Advertise, cert); err != nil {
		return nil, err
	}
	return pki.Credentials{CACertPEM: creds.CACertPEM, CertPEM: cert, KeyPEM: key}.Bundle(), nil
}

// applyTimeout bounds committing one command: a leader that cannot reach a
// quorum steps down well within it, failing the command.
const applyTimeout = 10 * time.Second

// apply commits one command through this node (the leader) with
// store.Propose and returns what the FSM answered.
func (n *Node) apply(t store.CommandType, body any) (any, error) {
	return store.Propose(n.raft, t, body, applyTimeout)
}

// every calls f every interval until ctx ends; the first call is one
// interval after the start.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

// localAdminName is the name of the admin credential the CLI keeps on the
// appliance name (LocalAdmin).
func localAdminName(appliance string) string {
	if admin := "local-" + appliance; len(admin) <= 63 {
		return admin
	}
	return appliance
}
