package agent

import (
	"fmt"
	"strings"
	"sync"
	"unicode"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprometheus "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// Raft (and raft-boltdb) report their metrics through go-metrics'
// process-wide global, the package hashicorp/go-metrics/compat picks
// (armon/go-metrics by default, as raft itself is built). go-metrics'
// own Prometheus sink turns them into Prometheus metrics; raftNames sits
// in front of it and gives them names Prometheus's conventions (and
// promtool check metrics) accept: fleetctl_ prefix, snake_case names and
// label names, timers in
// seconds with _seconds (go-metrics measures in milliseconds), counters
// with _total. The per-peer copies raft still emits with the peer's name
// inside the metric name are dropped: the same values come labelled
// peer_id.
//
// The sink is one per process, as go-metrics' global is: every agent's
// registry collects it. One agent runs per process outside tests.

var raftSink struct {
	once sync.Once
	sink *gmprometheus.PrometheusSink
	err  error
}

// raftCollector returns the Prometheus collector of raft's metrics,
// setting go-metrics' global up the first time.
func raftCollector() (prometheus.Collector, error) {
	raftSink.once.Do(func() {
		// Its own registry, never the global one: each agent's registry
		// registers the sink, which is itself the collector.
		sink, err := gmprometheus.NewPrometheusSinkFrom(gmprometheus.PrometheusOpts{Name: "fleetctl_raft_sink", Registerer: prometheus.NewRegistry()})
		if err != nil {
			raftSink.err = fmt.Errorf("raft metrics: %w", err)
			return
		}
		conf := gometrics.DefaultConfig("")
		conf.EnableHostname = false       // not in the names
		conf.EnableRuntimeMetrics = false // the Go collector has them
		if _, err := gometrics.NewGlobal(conf, raftNames{sink}); err != nil {
			raftSink.err = fmt.Errorf("raft metrics: %w", err)
			return
		}
		raftSink.sink = sink
	})
	return raftSink.sink, raftSink.err
}

// raftNames renames go-metrics keys for Prometheus (see above) and passes
// them on.
type raftNames struct{ next gometrics.MetricSink }

// Samples of raft and raft-boltdb that are not times in milliseconds.
var (
	raftCountSamples = map[string]bool{"applyBatchNum": true, "logsPerBatch": true, "writeCapacity": true, "saturation": true}
	raftByteSamples  = map[string]bool{"logSize": true, "logBatchSize": true}
	// Gauges in milliseconds.
	raftMillisGauges = map[string]bool{"oldestLogAge": true, "lastRestoreDuration": true}
)

func (s raftNames) SetGauge(key []string, val float32) { s.SetGaugeWithLabels(key, val, nil) }

func (s raftNames) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	name := raftKey(key)
	if raftMillisGauges[key[len(key)-1]] {
		name, val = append(name, "seconds"), val/1000
	}
	s.next.SetGaugeWithLabels(name, val, snakeLabels(labels))
}

// EmitKey is dropped, as go-metrics' Prometheus sink drops it.
func (s raftNames) EmitKey([]string, float32) {}

func (s raftNames) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }

func (s raftNames) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	if legacyPeerKey(key, labels) {
		return
	}
	s.next.IncrCounterWithLabels(append(raftKey(key), "total"), val, snakeLabels(labels))
}

func (s raftNames) AddSample(key []string, val float32) { s.AddSampleWithLabels(key, val, nil) }

func (s raftNames) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	if legacyPeerKey(key, labels) {
		return
	}
	name, last := raftKey(key), key[len(key)-1]
	switch {
	case raftCountSamples[last]:
	case raftByteSamples[last]:
		name = append(name, "bytes")
	default:
		name, val = append(name, "seconds"), val/1000
	}
	s.next.AddSampleWithLabels(name, val, snakeLabels(labels))
}

// legacyPeerKey says whether key is one of raft's replication metrics
// with the peer's name as its last part (raft emits each also with a
// peer_id label).
func legacyPeerKey(key []string, labels []gometrics.Label) bool {
	return len(labels) == 0 && len(key) > 2 && key[0] == "raft" && key[1] == "replication"
}

// raftKey is key with the fleetctl prefix and each part in snake_case.
func raftKey(key []string) []string {
	out := make([]string, 0, len(key)+2)
	out = append(out, "fleetctl")
	for _, k := range key {
		out = append(out, snakeName(k))
	}
	return out
}

// snakeNames caches snakeCase of the key parts and label names raft
// emits: a few dozen strings, each converted again for every heartbeat
// and AppendEntries to every member otherwise.
var snakeNames sync.Map // string -> string

// snakeName is snakeCase(s), from the cache once converted.
func snakeName(s string) string {
	if v, ok := snakeNames.Load(s); ok {
		return v.(string)
	}
	out := snakeCase(s)
	snakeNames.Store(s, out)
	return out
}

// snakeLabels is labels with snake_case names (raft's rpcType).
func snakeLabels(labels []gometrics.Label) []gometrics.Label {
	if len(labels) == 0 {
		return labels
	}
	out := make([]gometrics.Label, len(labels))
	for i, l := range labels {
		out[i] = gometrics.Label{Name: snakeName(l.Name), Value: l.Value}
	}
	return out
}

// snakeCase turns camelCase (and initialisms: getRPCType) into
// snake_case.
func snakeCase(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			nextLower := i > 0 && i+1 < len(r) && unicode.IsUpper(r[i-1]) && unicode.IsLower(r[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}
