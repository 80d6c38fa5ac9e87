// Package ui is fleetctl's dashboard: a small web server, run by
// `fleetctl ui` on an admin's machine or an appliance, that shows the
// fleet (members, appliances, replication, the witness, snapshots) and
// lets an admin preview and apply a fleet.yaml and switch a share over.
//
// It is a client of the agents' API and nothing more: every page reads
// through the Fleet interface (a *client.Client holding an admin
// credential), every action calls the same client method as the CLI, and
// the agents decide what is allowed and what needs approval. The browser
// never holds a certificate: the server listens on loopback only and
// admits a browser that opened the login URL with its random token (a
// cookie from then on); actions are POSTs that must come from its own
// pages (SameSite=Strict cookie and Go's cross-origin protection).
//
// Pages are html/template and a little plain JavaScript, embedded in the
// binary: readable without JavaScript; with it, each page's live part is
// fetched again every few seconds.
package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/preview"
	"github.com/fleetctl/fleetctl/store"
)

// Fleet is what the dashboard asks of the fleet. *client.Client
// implements it; the agents enforce who may do what, so an implementation
// needs no checks of its own.
type Fleet interface {
	preview.Fleet
	ReplicationStatus(ctx context.Context) ([]client.ReplicationShare, error)
	Trail(ctx context.Context, share string) ([]store.TrailEntry, error)
	WitnessStatus(ctx context.Context) (*client.WitnessStatus, error)
	WitnessLog(ctx context.Context) ([]store.WitnessEvent, error)
	Snapshots(ctx context.Context, share, appliance string) (*client.SnapshotsResponse, error)
	Pools(ctx context.Context) (*client.PoolsResponse, error)
	Apply(ctx context.Context, req client.ApplyRequest) (*client.ApplyResponse, error)
	Failover(ctx context.Context, share, to string) (*client.FailoverResponse, error)
}

// Options configure a Server.
type Options struct {
	// Token is the login token; a random one when empty.
	Token string
	// SampleEvery is how often the witness's round trips are sampled for
	// the latency graph; 10s when zero.
	SampleEvery time.Duration
	// Logger receives what goes wrong; slog.Default() when nil.
	Logger *slog.Logger
	// FailoverTimeout bounds a switchover; 10m when zero (as fleetctl
	// failover's --wait).
	FailoverTimeout time.Duration
}

// Server serves the dashboard.
type Server struct {
	fleet   Fleet
	token   string
	session string // the cookie's value: not the token, which was in a URL
	log     *slog.Logger
	pages   map[string]*template.Template
	static  http.Handler
	latency *latency
	rates   sendRates
	every   time.Duration
	switchT time.Duration
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New makes a dashboard server for fleet.
func New(fleet Fleet, opts Options) (*Server, error) {
	s := &Server{fleet: fleet, token: opts.Token, log: opts.Logger, every: opts.SampleEvery, switchT: opts.FailoverTimeout}
	if s.token == "" {
		s.token = randomHex()
	}
	s.session = randomHex()
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.every <= 0 {
		s.every = 10 * time.Second
	}
	if s.switchT <= 0 {
		s.switchT = 10 * time.Minute
	}
	s.latency = newLatency(time.Hour)
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("static files: %w", err)
	}
	s.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	return s, nil
}

// Token is the login token: the URL path /?token=TOKEN logs a browser in.
func (s *Server) Token() string { return s.token }

// randomHex is 32 random bytes in hex.
func randomHex() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// Run samples the witness's round trips for the latency graph until ctx
// ends.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, err := s.fleet.WitnessStatus(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("latency sample", "err", err)
		}
		return
	}
	s.latency.add(time.Now(), ws.Members)
}

// Handler is the dashboard's HTTP handler: every path needs a logged-in
// browser, every POST must come from the dashboard's own pages.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", s.static)
	mux.HandleFunc("GET /{$}", s.fleetPage)
	mux.HandleFunc("GET /appliances", s.appliancesPage)
	mux.HandleFunc("GET /replication", s.replicationPage)
	mux.HandleFunc("GET /witness", s.witnessPage)
	mux.HandleFunc("GET /snapshots", s.snapshotsPage)
	mux.HandleFunc("GET /plan", s.planForm)
	mux.HandleFunc("POST /plan", s.planPreview)
	mux.HandleFunc("POST /plan/apply", s.planApply)
	mux.HandleFunc("POST /failover", s.failover)
	cop := http.NewCrossOriginProtection()
	return s.headers(s.loopbackHost(s.login(cop.Handler(mux))))
}

// headers sets what every answer carries: no framing, no scripts or
// styles but the dashboard's own, no referrer.
func (s *Server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// loopbackHost refuses a request whose Host is not a loopback name or
// address: a page elsewhere that rebinds its DNS name to 127.0.0.1 reaches
// the port but not the dashboard.
func (s *Server) loopbackHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsLoopbackHost(r.Host) {
			http.Error(w, "fleetctl ui answers only to a loopback host name (127.0.0.1, [::1] or localhost)", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// IsLoopbackHost reports whether hostport (host or host:port) names this
// machine's loopback: localhost or a loopback address.
func IsLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// cookieName is the session cookie's name for the port r came to: cookies
// do not tell ports apart, and two dashboards on one machine must not
// log each other out.
func cookieName(r *http.Request) string {
	_, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		port = "80"
	}
	return "fleetctl-ui-" + port
}

// login admits a browser: a GET with ?token=TOKEN sets the session cookie
// and redirects to the same URL without the token; any other request needs
// the cookie.
func (s *Server) login(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has("token") {
			if r.Method != http.MethodGet || subtle.ConstantTimeCompare([]byte(q.Get("token")), []byte(s.token)) != 1 {
				s.refuse(w, "That login token is not this dashboard's. Open the URL fleetctl ui printed when it started.")
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: s.session, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		c, err := r.Cookie(cookieName(r))
		if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) != 1 {
			s.refuse(w, "This dashboard needs its login token. Open the URL fleetctl ui printed when it started (it ends in ?token=…).")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) refuse(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_ = s.pages["refused"].ExecuteTemplate(w, "refused", msg)
}

// apiMessage is err as one sentence for a page: the API's own message
// when it is an API error.
func apiMessage(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}
