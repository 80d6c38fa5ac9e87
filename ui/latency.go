package ui

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

// latency keeps the round trips the witness measured, sampled by this
// process while it runs (the fleet keeps no history of them), for a
// window.
type latency struct {
	window time.Duration
	mu     sync.Mutex
	// series are by appliance, in the order first seen.
	names  []string
	series map[string][]rttSample
}

// rttSample is one sample: the round trip, or unreachable.
type rttSample struct {
	at        time.Time
	ms        float64
	reachable bool
}

func newLatency(window time.Duration) *latency {
	return &latency{window: window, series: map[string][]rttSample{}}
}

// add records the members' round trips at now and forgets samples older
// than the window.
func (l *latency) add(now time.Time, members []client.WitnessMember) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range members {
		if _, ok := l.series[m.Name]; !ok {
			l.names = append(l.names, m.Name)
		}
		s := append(l.series[m.Name], rttSample{at: now, ms: m.RTTMillis, reachable: m.Reachable})
		i := 0
		for i < len(s) && now.Sub(s[i].at) > l.window {
			i++
		}
		l.series[m.Name] = slices.Clone(s[i:])
	}
}

// graph is the latency graph as the witness page draws it in SVG: one
// polyline per appliance over the window, time left to right.
type graph struct {
	Width, Height float64
	// MaxMS is the round trip at the top of the graph.
	MaxMS float64
	// Span is how far back the graph reaches: the window, or less while
	// this process has sampled for less; From is where it starts.
	Span  string
	From  time.Time
	Lines []graphLine
	// Mid is the y of the half-way line.
	Mid float64
}

// graphLine is one appliance's round trips.
type graphLine struct {
	Name string
	// Class picks its colour (series-0 …).
	Class string
	// Points are the polyline's points; empty with fewer than two samples.
	Points string
	// Samples, Min, Avg and Max summarise it for the table beside the
	// graph (reachable samples only).
	Samples, Unreachable int
	Min, Avg, Max        float64
}

// graph draws the samples of the window that ends at now.
func (l *latency) graph(now time.Time) graph {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := graph{Width: 600, Height: 160, MaxMS: 1}
	start := now
	for _, n := range l.names {
		for _, s := range l.series[n] {
			if s.reachable {
				g.MaxMS = max(g.MaxMS, s.ms)
			}
			if s.at.Before(start) {
				start = s.at
			}
		}
	}
	g.MaxMS = niceCeil(g.MaxMS)
	g.Mid = g.Height / 2
	// The graph spans the samples it has, at least 10s, at most the
	// window: the first minutes after a start are not a sliver at the edge.
	span := min(max(now.Sub(start), 10*time.Second), l.window)
	start = now.Add(-span)
	g.From, g.Span = start, roundDur(span)
	for i, n := range l.names {
		line := graphLine{Name: n, Class: fmt.Sprintf("series-%d", i%6)}
		var pts []string
		sum := 0.0
		for _, s := range l.series[n] {
			if !s.reachable {
				line.Unreachable++
				continue
			}
			if s.ms <= 0 || s.at.Before(start) {
				continue // not measured yet
			}
			x := float64(s.at.Sub(start)) / float64(span) * g.Width
			y := g.Height - s.ms/g.MaxMS*g.Height
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			if line.Samples == 0 || s.ms < line.Min {
				line.Min = s.ms
			}
			line.Max = max(line.Max, s.ms)
			sum += s.ms
			line.Samples++
		}
		if line.Samples > 0 {
			line.Avg = sum / float64(line.Samples)
		}
		if len(pts) == 1 {
			pts = append(pts, pts[0]) // a dot, until the next sample
		}
		line.Points = strings.Join(pts, " ")
		g.Lines = append(g.Lines, line)
	}
	return g
}

// niceCeil rounds ms up to 1, 2 or 5 times a power of ten.
func niceCeil(ms float64) float64 {
	p := 1.0
	for p*10 < ms {
		p *= 10
	}
	for p > ms*10 {
		p /= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= ms {
			return m * p
		}
	}
	return 10 * p
}
