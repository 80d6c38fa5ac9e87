package ui

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
)

// readTimeout bounds the fleet reads of one page.
const readTimeout = 20 * time.Second

// page is what every page's template gets.
type page struct {
	// Name is the page's name in the navigation ("fleet", "plan", …).
	Name  string
	Title string
	// Errors are what the fleet did not answer, one sentence each.
	Errors []string
	// At is when the page was made.
	At time.Time
	// Live says the page's #live part is fetched again every few seconds.
	Live bool
	Data any
}

var funcs = template.FuncMap{
	"bytes": humanBytes,
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return roundDur(time.Since(t)) + " ago"
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ms":   func(f float64) string { return fmt.Sprintf("%.1f ms", f) },
	"dur":  func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	"span": roundDur,
}

// parseTemplates makes one template set per page: the layout with the
// page's own templates.
func parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("templates: %w", err)
		}
		pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return pages, nil
}

// render writes p with its page's template: the whole page, or with
// ?fragment=live only its live part (for the script that refreshes it).
func (s *Server) render(w http.ResponseWriter, r *http.Request, tmpl string, p page) {
	p.At = time.Now()
	name := "layout"
	if r.URL.Query().Get("fragment") == "live" {
		name = "live"
	}
	var b bytes.Buffer
	if err := s.pages[tmpl].ExecuteTemplate(&b, name, p); err != nil {
		s.log.Error("render", "page", tmpl, "err", err)
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = b.WriteTo(w)
}

// fleetView is the fleet page.
type fleetView struct {
	Status *client.Status
}

func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := page{Name: "fleet", Title: "Fleet", Live: true}
	st, err := s.fleet.Status(ctx)
	if err != nil {
		p.Errors = append(p.Errors, "status: "+apiMessage(err))
	}
	p.Data = fleetView{Status: st}
	s.render(w, r, "fleet", p)
}

// applianceView is one storage appliance on the appliances page.
type applianceView struct {
	client.ApplianceStatus
	State string
	Pools []poolView
	// Orphans are the appliance's orphaned subvolumes with their sizes.
	Orphans []client.Orphan
	// Replicas are the replicated shares this appliance holds the
	// read-only replica of (received copies, not shares of its own).
	Replicas []client.ShareFailover
}

// poolView is one pool of an appliance: what the spec says, what its
// shares hold, and its filesystem's space as its agent reads it now.
type poolView struct {
	schema.Pool
	Shares []store.ShareFacts
	// Used is the bytes its shares refer to, by their last reports.
	Used uint64
	// Space is the filesystem's size, used and free bytes (nil when its
	// agent did not say); SpaceError why not.
	Space      *client.PoolSpace
	SpaceError string
}

func (s *Server) appliancesPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := page{Name: "appliances", Title: "Appliances", Live: true}
	st, err := s.fleet.Status(ctx)
	if err != nil {
		p.Errors = append(p.Errors, "status: "+apiMessage(err))
		s.render(w, r, "appliances", p)
		return
	}
	spec, err := s.storedSpec(ctx)
	if err != nil {
		p.Errors = append(p.Errors, err.Error())
	}
	pools, err := s.fleet.Pools(ctx)
	if err != nil {
		p.Errors = append(p.Errors, "pools: "+apiMessage(err))
		pools = &client.PoolsResponse{}
	}
	p.Data = appliancesView(st, spec, pools)
	s.render(w, r, "appliances", p)
}

// appliancesView joins the status reports with the stored spec's pools
// and their space.
func appliancesView(st *client.Status, spec *schema.Spec, space *client.PoolsResponse) []applianceView {
	var out []applianceView
	for _, a := range st.Appliances {
		v := applianceView{ApplianceStatus: a, State: applianceState(a, st.Generation)}
		var pools []schema.Pool
		if spec != nil {
			for _, sa := range spec.Appliances {
				if sa.Name == a.Name {
					pools = sa.Pools
				}
			}
		}
		for _, sh := range a.Shares {
			if !slices.ContainsFunc(pools, func(p schema.Pool) bool { return p.Name == sh.Pool }) {
				pools = append(pools, schema.Pool{Name: sh.Pool})
			}
		}
		for _, pl := range pools {
			pv := poolView{Pool: pl}
			for i, ps := range space.Pools {
				if ps.Appliance == a.Name && ps.Pool == pl.Name {
					if ps.Error != "" {
						pv.SpaceError = ps.Error
					} else {
						pv.Space = &space.Pools[i]
					}
				}
			}
			for _, e := range space.Errors {
				if e.Appliance == a.Name {
					pv.SpaceError = e.Error
				}
			}
			for _, sh := range a.Shares {
				if sh.Pool == pl.Name {
					pv.Shares = append(pv.Shares, sh)
					pv.Used += sh.Referenced
				}
			}
			v.Pools = append(v.Pools, pv)
		}
		for _, sf := range st.Shares {
			if sf.Replica == a.Name {
				v.Replicas = append(v.Replicas, sf)
			}
		}
		for _, o := range st.Orphans {
			if o.Appliance == a.Name {
				v.Orphans = append(v.Orphans, o)
			}
		}
		out = append(out, v)
	}
	return out
}

// applianceState is how far an appliance's reconciler has come, as
// fleetctl status says it.
func applianceState(a client.ApplianceStatus, gen uint64) string {
	switch {
	case !a.Reported:
		return "not reported"
	case len(a.Errors) > 0:
		return "errors"
	case a.ObservedGeneration < gen:
		return "behind"
	case !a.Converged:
		return "reconciling"
	}
	return "converged"
}

// storedSpec is the stored spec, parsed; nil before the first apply.
func (s *Server) storedSpec(ctx context.Context) (*schema.Spec, error) {
	sp, err := s.fleet.Spec(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("stored spec: %s", apiMessage(err))
	}
	if sp.Generation == 0 {
		return nil, nil
	}
	spec, err := schema.Parse("stored spec", []byte(sp.YAML))
	if err != nil {
		return nil, fmt.Errorf("the stored spec no longer parses: %w", err)
	}
	return spec, nil
}

// replicationView is one replicated share on the replication page.
type replicationView struct {
	client.ReplicationShare
	Schedule string
	// Lag is how old the target's newest copy is; "-" when none arrived.
	Lag string
	// Late says the lag is past twice the schedule's period.
	Late bool
	// Sending says a run is going now, with Bytes so far, at Rate
	// (bytes a second since the page's last look; 0 unknown), and for a
	// first, full send the ETA (0 unknown).
	Sending bool
	Bytes   int64
	Rate    float64
	ETA     time.Duration
	Trail   []store.TrailEntry
	// TrailError says why the trail could not be read.
	TrailError string
}

// trailShown is how many of a share's newest trail entries the page shows.
const trailShown = 10

func (s *Server) replicationPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := page{Name: "replication", Title: "Replication", Live: true}
	shares, err := s.fleet.ReplicationStatus(ctx)
	if err != nil {
		p.Errors = append(p.Errors, "replication status: "+apiMessage(err))
	}
	spec, err := s.storedSpec(ctx)
	if err != nil {
		p.Errors = append(p.Errors, err.Error())
	}
	now := time.Now()
	// The shares' sizes, for the ETA of a first send (best effort).
	sizes := map[string]int64{}
	if st, err := s.fleet.Status(ctx); err == nil {
		for _, a := range st.Appliances {
			for _, sf := range a.Shares {
				if !sf.Demoted && int64(sf.Referenced) > sizes[sf.Name] {
					sizes[sf.Name] = int64(sf.Referenced)
				}
			}
		}
	}
	var views []replicationView
	for _, sh := range shares {
		v := replicationLag(sh, spec, now)
		if v.Sending {
			v.Rate = s.rates.observe(sh.Share, sh.Source.LastAttempt, v.Bytes, now)
			if sh.LastSuccess.IsZero() {
				v.ETA = sendETA(sizes[sh.Share], v.Bytes, v.Rate)
			}
		}
		trail, err := s.fleet.Trail(ctx, sh.Share)
		if err != nil {
			v.TrailError = apiMessage(err)
		}
		if len(trail) > trailShown {
			trail = trail[len(trail)-trailShown:]
		}
		slices.Reverse(trail)
		v.Trail = trail
		views = append(views, v)
	}
	p.Data = views
	s.render(w, r, "replication", p)
}

// replicationLag is sh's lag against its schedule at now: the lag is how
// old the snapshot the last successful send delivered is (as fleetctl
// replication status says it); it is late past twice the schedule's
// period, a run missed or failing.
func replicationLag(sh client.ReplicationShare, spec *schema.Spec, now time.Time) replicationView {
	v := replicationView{ReplicationShare: sh, Lag: "-"}
	var sched schema.Schedule
	if spec != nil {
		for _, x := range spec.Shares {
			if x.Name == sh.Share && x.Replication != nil {
				sched = x.Replication.Schedule
			}
		}
	}
	v.Schedule = sched.String()
	if sh.Source != nil && sh.Source.Running {
		v.Sending, v.Bytes = true, sh.Source.Bytes
	}
	if sh.LastSuccess.IsZero() {
		return v
	}
	t, err := time.Parse(reconcile.StampFormat, sh.LastSnapshot)
	if err != nil {
		return v
	}
	lag := now.Sub(t)
	v.Lag = roundDur(lag)
	if period := schedulePeriod(sched, now); period > 0 {
		v.Late = lag > 2*period
	}
	return v
}

// schedulePeriod is the time between two runs of sched around now; 0 for
// no schedule.
func schedulePeriod(sched schema.Schedule, now time.Time) time.Duration {
	if sched.IsZero() {
		return 0
	}
	if d := sched.Interval(); d > 0 {
		return d
	}
	next := sched.Next(now)
	return sched.Next(next).Sub(next)
}

// witnessView is the witness page.
type witnessView struct {
	Status *client.WitnessStatus
	Log    []store.WitnessEvent
	Graph  graph
}

// witnessLogShown is how many of the newest witness log entries the page
// shows.
const witnessLogShown = 50

func (s *Server) witnessPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := page{Name: "witness", Title: "Witness", Live: true}
	ws, err := s.fleet.WitnessStatus(ctx)
	if err != nil {
		p.Errors = append(p.Errors, "witness status: "+apiMessage(err))
	} else {
		s.latency.add(time.Now(), ws.Members)
	}
	log, err := s.fleet.WitnessLog(ctx)
	if err != nil {
		p.Errors = append(p.Errors, "witness log: "+apiMessage(err))
	}
	if len(log) > witnessLogShown {
		log = log[len(log)-witnessLogShown:]
	}
	slices.Reverse(log)
	p.Data = witnessView{Status: ws, Log: log, Graph: s.latency.graph(time.Now())}
	s.render(w, r, "witness", p)
}

func (s *Server) snapshotsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := page{Name: "snapshots", Title: "Snapshots", Live: true}
	res, err := s.fleet.Snapshots(ctx, "", "")
	if err != nil {
		p.Errors = append(p.Errors, "snapshots: "+apiMessage(err))
	}
	p.Data = res
	s.render(w, r, "snapshots", p)
}

// humanBytes is n in binary units, as the CLI prints sizes.
func humanBytes(n any) string {
	var v float64
	switch x := n.(type) {
	case int64:
		v = float64(x)
	case uint64:
		v = float64(x)
	case int:
		v = float64(x)
	case float64:
		v = x
	case *uint64:
		if x == nil {
			return "-"
		}
		v = float64(*x)
	default:
		return fmt.Sprint(n)
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// roundDur is d to the second (to the minute past an hour).
func roundDur(d time.Duration) string {
	if d > time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
