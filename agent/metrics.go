package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// The agent's Prometheus metrics (GET /metrics on the API port, and on
// --metrics-listen). Each agent has its own registry, never the global
// one. Almost everything is read at scrape time from what the agent
// already holds (its copy of the replicated state, its replicator, its
// lease, the witness's bookkeeping while it leads, its credentials), by
// stateCollector: nothing is updated in the code paths it describes.
// Only what happens between scrapes is counted as it happens: reconcile
// runs (reconcile.Loop.Ran) and this agent's replication sends
// (recordTrail). Raft's own metrics come through go-metrics
// (raftmetrics.go). docs/operations.md lists every metric.

// metrics is one agent's registry and the metrics updated as things
// happen.
type metrics struct {
	reg  *prometheus.Registry
	http http.Handler

	reconcileRuns     prometheus.Counter
	reconcileErrors   prometheus.Counter
	reconcileDuration prometheus.Histogram
	replicationRuns   *prometheus.CounterVec

	mu sync.Mutex
	// lastRun is the reconciler's last report and when it ended; nil
	// before the first run.
	lastRun   *reconcile.Report
	lastRunAt time.Time
	failovers failoverTally
}

// newMetrics makes n's registry with every collector registered.
func newMetrics(n *Node) (*metrics, error) {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reconcileRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetctl_reconcile_runs_total",
			Help: "Reconcile runs of this appliance since the agent started.",
		}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetctl_reconcile_errors_total",
			Help: "Errors the reconcile runs of this appliance met (failed actions, unreadable pools), since the agent started.",
		}),
		reconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleetctl_reconcile_duration_seconds",
			Help:    "How long a reconcile run of this appliance took.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		replicationRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetctl_replication_runs_total",
			Help: "Replication sends this appliance made since the agent started, by share and result (ok, failed, refused).",
		}, []string{"share", "result"}),
		failovers: failoverTally{since: time.Now()},
	}
	raft, err := raftCollector()
	if err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{
		m.reconcileRuns, m.reconcileErrors, m.reconcileDuration, m.replicationRuns,
		&stateCollector{n: n, m: m},
		raft,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	m.http = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m, nil
}

// reconciled counts one reconcile run (reconcile.Loop.Ran).
func (m *metrics) reconciled(rep reconcile.Report, took time.Duration) {
	m.reconcileRuns.Inc()
	m.reconcileErrors.Add(float64(len(rep.Errors)))
	m.reconcileDuration.Observe(took.Seconds())
	m.mu.Lock()
	m.lastRun, m.lastRunAt = &rep, time.Now()
	m.mu.Unlock()
}

// sent counts one replication attempt this agent recorded as the sender.
func (m *metrics) sent(e reconcile.TrailEntry) {
	if e.Side == reconcile.SideSend {
		m.replicationRuns.WithLabelValues(e.Share, e.Result).Inc()
	}
}

func (n *Node) handleMetrics(w http.ResponseWriter, r *http.Request) {
	n.metrics.http.ServeHTTP(w, r)
}

// ErrMetricsNotLoopback: --metrics-listen names an address other than a
// loopback one. The plain-HTTP metrics port is for a scraper on the same
// machine; every other listener of the fleet authenticates its peer.
var ErrMetricsNotLoopback = errors.New("the plain-HTTP metrics address must be a loopback address")

// CheckMetricsListen refuses an address that is not host:port on a
// loopback address (127.0.0.0/8, ::1 or localhost).
func CheckMetricsListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Errorf("%w: %q listens on %s, in plaintext and without authentication; use 127.0.0.1:PORT (or [::1]:PORT) for a scraper on this appliance, "+
		"and scrape GET /metrics on the agent's TLS port with a fleet credential from anywhere else", ErrMetricsNotLoopback, addr, host)
}

// serveMetrics serves GET /metrics alone, in plaintext, on cfg's
// MetricsListen (a loopback address, checked by Start).
func (n *Node) serveMetrics() error {
	ln, err := net.Listen("tcp", n.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", n.cfg.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.http)
	n.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	n.metricsAddr = ln.Addr().String()
	go func() {
		if err := n.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics server stopped", "err", err)
		}
	}()
	n.log.Info("serving metrics in plaintext on loopback", "addr", n.metricsAddr)
	return nil
}

// MetricsAddr is the address the plain-HTTP metrics server listens on
// ("" without --metrics-listen): with port 0, the port the system chose.
func (n *Node) MetricsAddr() string { return n.metricsAddr }

// stateCollector reads the agent's state at each scrape.
type stateCollector struct {
	n *Node
	m *metrics
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descBuildInfo = desc("fleetctl_build_info", "Always 1: the fleetctl build this agent runs (version and VCS revision from the Go build info; \"unknown\" when not recorded).", "version", "revision", "goversion")
	descLeader    = desc("fleetctl_is_leader", "1 while this agent is the fleet's Raft leader and ready (it runs the witness), else 0.")
	descGen       = desc("fleetctl_spec_generation", "Generation of the spec in this agent's copy of the replicated state (0 before the first apply).")
	descNodeCert  = desc("fleetctl_node_certificate_expiry_timestamp_seconds", "When this agent's own certificate (node.crt) expires, as a Unix time.", "appliance")
	descCACert    = desc("fleetctl_ca_certificate_expiry_timestamp_seconds", "When the fleet's CA certificate (ca.crt) expires, as a Unix time.")

	descLeaseAge   = desc("fleetctl_lease_age_seconds", "This storage appliance's own count of its lease: seconds since it sent the newest renewal the leader answered. It fences its shares past fleetctl_witness_fence_after_seconds.", "appliance")
	descLeaseRTT   = desc("fleetctl_lease_round_trip_seconds", "Round trip of this appliance's newest answered lease renewal.", "appliance")
	descFenced     = desc("fleetctl_fenced", "1 while this appliance holds at least one share fenced (made read-only by itself: lease lapsed, starting up, stopping), else 0.", "appliance")
	descFencedN    = desc("fleetctl_fenced_shares", "How many shares this appliance holds fenced.", "appliance")
	descFenceAfter = desc("fleetctl_witness_fence_after_seconds", "The spec's witness fence_after: a storage appliance whose lease is this old fences itself.")
	descFailAfter  = desc("fleetctl_witness_failover_after_seconds", "The spec's witness failover_after: the leader fails a share over when its active appliance's lease is this old.")

	descWitAge       = desc("fleetctl_witness_lease_age_seconds", "Leader only: seconds since the leader received the appliance's newest lease renewal (or took office).", "appliance")
	descWitRTT       = desc("fleetctl_witness_round_trip_seconds", "Leader only: the lease round trip the appliance measured and reported with its newest renewal.", "appliance")
	descWitReachable = desc("fleetctl_witness_reachable", "Leader only: 1 when the storage appliance renewed its lease within the reachable window (3 s), else 0.", "appliance")
	descWitDegraded  = desc("fleetctl_witness_degraded", "Leader only: 1 when the appliance's lease round trip is above the policy's degraded_latency, else 0.", "appliance")

	descEpoch     = desc("fleetctl_share_epoch", "The replicated share's failover epoch: it rises by one on every failover and switchover, fleet-wide and across restarts.", "share")
	descFailovers = desc("fleetctl_failovers_total", "Failovers and switchovers this agent saw committed since it started, by share and reason (unreachable: the witness's automatic failover; switchover: fleetctl failover; failback; repaired: the spec paired the share anew; other).", "share", "reason")

	descInterval = desc("fleetctl_replication_interval_seconds", "The share's replication schedule as an interval (for a cron schedule: the gap between its next two runs). Sending appliance only.", "share")
	descRunning  = desc("fleetctl_replication_running", "1 while a replication of the share is under way from this appliance, else 0. Sending appliance only.", "share")
	descLag      = desc("fleetctl_replication_lag_seconds", "Seconds since the time of the newest snapshot of the share that was replicated successfully (its name's stamp): how much would be lost now. Sending appliance only; absent before the first success.", "share")
	descLastOK   = desc("fleetctl_replication_last_success_timestamp_seconds", "When the newest successful replication of the share ended, as a Unix time. Sending appliance only; absent before the first success.", "share")
	descBytes    = desc("fleetctl_replication_last_run_bytes", "Stream bytes of this appliance's last replication of the share (its trail's newest send).", "share")
	descSeconds  = desc("fleetctl_replication_last_run_duration_seconds", "How long this appliance's last replication of the share took.", "share")
	descResult   = desc("fleetctl_replication_last_run_result", "1 for the result of this appliance's last replication of the share (ok, failed or refused), 0 for the others.", "share", "result")
	descFailures = desc("fleetctl_replication_consecutive_failures", "Failed replications of the share since its last success, as this agent counted them since it started.", "share")

	descSnapshots  = desc("fleetctl_share_snapshots", "Snapshots of the share on this appliance, by its last reconcile run.", "share")
	descReferenced = desc("fleetctl_share_referenced_bytes", "Bytes the share refers to on this appliance (0 where its pool has no quotas), by its last reconcile run.", "share")
	descConverged  = desc("fleetctl_reconcile_converged", "1 when this appliance's last reconcile run left nothing to do, else 0. Absent before the first run.")
	descLastErrors = desc("fleetctl_reconcile_last_run_errors", "Errors of this appliance's last reconcile run.")
	descLastRun    = desc("fleetctl_reconcile_last_run_timestamp_seconds", "When this appliance's last reconcile run ended, as a Unix time.")
)

// Describe sends nothing: the collector is unchecked, since which series
// exist depends on the state (the shares, whether this agent leads).
func (c *stateCollector) Describe(chan<- *prometheus.Desc) {}

// Collect reads the state now.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	n, now := c.n, time.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	version, revision, goversion := buildInfo()
	gauge(descBuildInfo, 1, version, revision, goversion)
	gauge(descLeader, boolFloat(n.leaderReady.Load()))
	st := n.fsm.State()
	gauge(descGen, float64(st.Generation))
	c.certs(gauge)
	if st.Spec != nil {
		gauge(descFenceAfter, time.Duration(st.Spec.Witness.FenceAfter).Seconds())
		gauge(descFailAfter, time.Duration(st.Spec.Witness.FailoverAfter).Seconds())
	}
	c.lease(gauge, st, now)
	c.witness(gauge, st, now)
	for _, sh := range replicatedShares(st.Spec) {
		gauge(descEpoch, float64(st.Failover[sh.Name].Epoch), sh.Name)
	}
	c.replication(gauge, st, now)
	c.m.mu.Lock()
	failovers := c.m.failovers.observe(st.WitnessLog)
	last, lastAt := c.m.lastRun, c.m.lastRunAt
	c.m.mu.Unlock()
	// Every replicated share has a series for every reason from the
	// start, at 0, so that the first failover is an increase.
	for _, sh := range replicatedShares(st.Spec) {
		for _, r := range failoverReasons {
			if _, ok := failovers[failoverKey{sh.Name, r}]; !ok {
				failovers[failoverKey{sh.Name, r}] = 0
			}
		}
	}
	for k, v := range failovers {
		ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, v, k.share, k.reason)
	}
	if last != nil {
		for _, f := range last.Shares {
			gauge(descSnapshots, float64(f.Snapshots), f.Name)
			gauge(descReferenced, float64(f.Referenced), f.Name)
		}
		gauge(descConverged, boolFloat(last.Converged))
		gauge(descLastErrors, float64(len(last.Errors)))
		gauge(descLastRun, float64(lastAt.UnixNano())/1e9)
	}
}

func (c *stateCollector) certs(gauge func(*prometheus.Desc, float64, ...string)) {
	n := c.n
	creds := n.credentials()
	var leaf *x509.Certificate
	if creds.Live != nil {
		leaf = creds.Live.Leaf()
	}
	if leaf == nil {
		leaf, _ = parseCertPEM(creds.CertPEM)
	}
	if leaf != nil {
		gauge(descNodeCert, float64(leaf.NotAfter.Unix()), n.cfg.Name)
	}
	if ca, err := parseCertPEM(creds.CACertPEM); err == nil {
		gauge(descCACert, float64(ca.NotAfter.Unix()))
	}
}

// lease is this appliance's own side of its lease, while the spec names
// it a storage appliance.
func (c *stateCollector) lease(gauge func(*prometheus.Desc, float64, ...string), st *store.State, now time.Time) {
	n := c.n
	l := &n.lease
	name := n.cfg.Name
	l.mu.Lock()
	fenced := len(l.fenced)
	var age, rtt time.Duration
	storage := isStorage(st.Spec, name)
	if storage {
		age, rtt = n.leaseAgeLocked(st, now), l.rtt
	}
	l.mu.Unlock()
	gauge(descFenced, boolFloat(fenced > 0), name)
	gauge(descFencedN, float64(fenced), name)
	if storage {
		gauge(descLeaseAge, age.Seconds(), name)
		gauge(descLeaseRTT, rtt.Seconds(), name)
	}
}

// witness is the leader's view of every storage appliance's lease; other
// agents have none.
func (c *stateCollector) witness(gauge func(*prometheus.Desc, float64, ...string), st *store.State, now time.Time) {
	if st.Spec == nil || !c.n.leaderReady.Load() {
		return
	}
	wit := &c.n.wit
	wit.mu.Lock()
	defer wit.mu.Unlock()
	if !wit.leading {
		return
	}
	for _, a := range st.Spec.Appliances {
		if a.Role == schema.RoleWitness {
			continue
		}
		last, renewed := wit.book.lastRenewal(a.Name)
		age := now.Sub(last)
		gauge(descWitAge, age.Seconds(), a.Name)
		gauge(descWitReachable, boolFloat(age <= ReachableWindow), a.Name)
		if renewed {
			gauge(descWitRTT, wit.book.renewals[a.Name].rtt.Seconds(), a.Name)
			gauge(descWitDegraded, boolFloat(age <= ReachableWindow && wit.book.degraded[a.Name]), a.Name)
		}
	}
}

// replication describes the shares this appliance sends: its
// replicator's view and the trails of the replicated state.
func (c *stateCollector) replication(gauge func(*prometheus.Desc, float64, ...string), st *store.State, now time.Time) {
	n := c.n
	if n.replicator == nil {
		return
	}
	for _, s := range n.replicator.Status() {
		name := s.Share
		if sh := specShare(st, name); sh != nil && sh.Replication != nil {
			gauge(descInterval, scheduleInterval(sh.Replication.Schedule, now).Seconds(), name)
		}
		gauge(descRunning, boolFloat(s.Running), name)
		gauge(descFailures, float64(s.Failures), name)
		t := trailFacts(st.Trails[name], n.cfg.Name)
		if !t.newestData.IsZero() {
			gauge(descLag, max(0, now.Sub(t.newestData).Seconds()), name)
		}
		if !t.lastSuccess.IsZero() {
			gauge(descLastOK, float64(t.lastSuccess.UnixNano())/1e9, name)
		}
		if t.last != nil {
			gauge(descBytes, float64(t.last.Bytes), name)
			gauge(descSeconds, max(0, t.last.End.Sub(t.last.Start).Seconds()), name)
			for _, r := range []string{reconcile.ResultOK, reconcile.ResultFailed, reconcile.ResultRefused} {
				gauge(descResult, boolFloat(t.last.Result == r), name, r)
			}
		}
	}
}

// shareTrail is what the metrics read from one share's trail.
type shareTrail struct {
	// newestData is the stamp of the newest snapshot replicated
	// successfully (by either side, in either direction).
	newestData time.Time
	// lastSuccess is when the newest successful send ended.
	lastSuccess time.Time
	// last is the newest send by the appliance asked about.
	last *store.TrailEntry
}

// trailFacts reads trail (oldest first) for the sends of me.
func trailFacts(trail []store.TrailEntry, me string) shareTrail {
	var out shareTrail
	for i := range trail {
		e := &trail[i]
		if e.Side != reconcile.SideSend && e.Side != reconcile.SideReceive {
			continue
		}
		if e.Result == reconcile.ResultOK {
			if t, err := time.Parse(reconcile.StampFormat, e.Snapshot); err == nil && t.After(out.newestData) {
				out.newestData = t
			}
			if e.Side == reconcile.SideSend && e.End.After(out.lastSuccess) {
				out.lastSuccess = e.End
			}
		}
		if e.Side == reconcile.SideSend && e.From == me {
			out.last = e
		}
	}
	return out
}

// scheduleInterval is s's interval; for a cron schedule, the gap between
// its next two runs after now.
func scheduleInterval(s schema.Schedule, now time.Time) time.Duration {
	if d := s.Interval(); d > 0 {
		return d
	}
	next := s.Next(now)
	return s.Next(next).Sub(next)
}

// failoverTally counts the failovers of the witness log that this agent
// saw appear since it started. The log is bounded (store.MaxWitnessLog),
// so the tally keeps its own counts and remembers the newest event it
// went through; events from before the agent started (a log replayed at
// start) are not counted, so a restart never looks like a failover.
type failoverTally struct {
	since  time.Time
	last   *store.WitnessEvent
	counts map[failoverKey]float64
}

type failoverKey struct{ share, reason string }

// observe goes through the events of log after the last one it saw and
// returns a copy of the counts. The caller holds metrics.mu.
func (t *failoverTally) observe(log []store.WitnessEvent) map[failoverKey]float64 {
	start := 0
	if t.last != nil {
		for i := len(log) - 1; i >= 0; i-- {
			if sameEvent(log[i], *t.last) {
				start = i + 1
				break
			}
		}
	}
	if t.counts == nil {
		t.counts = map[failoverKey]float64{}
	}
	for _, e := range log[start:] {
		if e.Event == store.EventFailover && !e.At.Before(t.since) {
			t.counts[failoverKey{e.Share, failoverReasonKind(e.Detail)}]++
		}
	}
	if len(log) > 0 {
		e := log[len(log)-1]
		t.last = &e
	}
	out := make(map[failoverKey]float64, len(t.counts))
	for k, v := range t.counts {
		out[k] = v
	}
	return out
}

func sameEvent(a, b store.WitnessEvent) bool {
	return a.At.Equal(b.At) && a.Member == b.Member && a.Share == b.Share && a.Event == b.Event && a.Detail == b.Detail
}

// failoverReasons are the values of fleetctl_failovers_total's reason.
var failoverReasons = []string{"unreachable", "switchover", "failback", "repaired", "other"}

// How the reasons of failovers start (or what they hold), so that
// failoverReasonKind can tell them apart: the producers use these.
const (
	reasonSwitchover = "planned switchover by " // switchover.go: fleetctl failover
	reasonFailback   = "failback: "             // switchover.go: failbackLoop
	reasonRepaired   = " no longer holds "      // prune.go: re-paired shares
)

// failoverReasonKind names the kind of a failover event by its detail,
// which starts with the reason its proposer gave: failoverReason (the
// witness), or one of the reason constants above.
func failoverReasonKind(detail string) string {
	switch {
	case strings.HasPrefix(detail, reasonSwitchover):
		return "switchover"
	case strings.HasPrefix(detail, reasonFailback):
		return "failback"
	case strings.Contains(detail, " unreachable for ") && strings.Contains(detail, "failover_after"):
		return "unreachable"
	case strings.Contains(detail, reasonRepaired):
		return "repaired"
	}
	return "other"
}

// buildInfo is this binary's version, VCS revision and Go version from
// its build info.
func buildInfo() (version, revision, goversion string) {
	version, revision, goversion = "unknown", "unknown", "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	goversion = bi.GoVersion
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			revision = s.Value
		}
	}
	return
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
