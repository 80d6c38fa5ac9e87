package ui_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/reconcile"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/fleetctl/fleetctl/store"
	"github.com/fleetctl/fleetctl/ui"
)

// fakeFleet answers the dashboard's reads with fixed answers and records
// its actions. The end-to-end script (testdata/ui_btrfs.txtar) runs the
// dashboard against real agents; these tests check its own rules.
type fakeFleet struct {
	mu        sync.Mutex
	failovers []string
	applies   []client.ApplyRequest
	// sending makes ReplicationStatus report a first send of share
	// projects going on, 10 MiB further at each call.
	sending bool
	sent    int64
}

func (f *fakeFleet) Status(context.Context) (*client.Status, error) {
	return &client.Status{Node: "nas1", Leader: "nas1", Generation: 3, Members: []client.Member{
		{Name: "nas1", Leader: true, Voter: true, Reachable: true, Health: client.HealthHealthy},
		{Name: "nas2", Voter: true, Reachable: true, Health: client.HealthHealthy},
	}}, nil
}
func (f *fakeFleet) Spec(context.Context, bool) (*client.SpecResponse, error) {
	return &client.SpecResponse{}, nil
}
func (f *fakeFleet) Plan(context.Context, string) (*client.PlanResponse, error) {
	return &client.PlanResponse{}, nil
}
func (f *fakeFleet) ReplicationStatus(context.Context) ([]client.ReplicationShare, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sending {
		return nil, nil
	}
	f.sent += 10 << 20
	return []client.ReplicationShare{{Share: "projects", Source: &reconcile.ShareReplication{Share: "projects", Running: true, Bytes: f.sent, LastAttempt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}}}, nil
}
func (f *fakeFleet) Trail(context.Context, string) ([]store.TrailEntry, error) { return nil, nil }
func (f *fakeFleet) WitnessStatus(context.Context) (*client.WitnessStatus, error) {
	return &client.WitnessStatus{Leader: "nas1"}, nil
}
func (f *fakeFleet) WitnessLog(context.Context) ([]store.WitnessEvent, error) { return nil, nil }
func (f *fakeFleet) Pools(context.Context) (*client.PoolsResponse, error) {
	return &client.PoolsResponse{Pools: []client.PoolSpace{{Appliance: "nas1", Pool: "tank", Size: 4 << 30, Used: 1 << 30, Free: 3 << 30}}}, nil
}
func (f *fakeFleet) Snapshots(context.Context, string, string) (*client.SnapshotsResponse, error) {
	return &client.SnapshotsResponse{}, nil
}

// Apply refuses a request without approvals as the leader refuses a spec
// that deletes a share.
func (f *fakeFleet) Apply(_ context.Context, req client.ApplyRequest) (*client.ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, req)
	if len(req.Approve) == 0 {
		return nil, &client.APIError{Code: client.CodeApprovalRequired, Message: "needs approval", Generation: 3,
			Hazards: []schema.Hazard{{Kind: schema.HazardDelete, Name: "old", Reason: "share old is DELETED"}}}
	}
	return &client.ApplyResponse{Generation: 4}, nil
}
func (f *fakeFleet) Failover(_ context.Context, share, to string) (*client.FailoverResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failovers = append(f.failovers, share+"→"+to)
	return &client.FailoverResponse{Share: share, To: to, From: "nas1", Epoch: 1}, nil
}

// dashboard starts a dashboard for f and returns its URL (on 127.0.0.1)
// and a client logged in to it.
func dashboard(t *testing.T, f *fakeFleet) (*ui.Server, string, *http.Client) {
	t.Helper()
	srv, err := ui.New(f, ui.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return srv, ts.URL, &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// login opens the login URL and returns the session cookie it sets.
func login(t *testing.T, srv *ui.Server, base string, c *http.Client) *http.Cookie {
	t.Helper()
	resp, _ := get(t, c, base+"/replication?token="+srv.Token(), nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/replication" {
		t.Fatalf("login: %s to %q, want 303 to /replication (the token dropped)", resp.Status, resp.Header.Get("Location"))
	}
	cs := resp.Cookies()
	if len(cs) != 1 || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login cookie: %+v, want one HttpOnly SameSite=Strict cookie", cs)
	}
	if cs[0].Value == srv.Token() {
		t.Fatalf("the cookie holds the token itself; it should hold a session secret of its own")
	}
	return cs[0]
}

func TestLoginToken(t *testing.T) {
	srv, base, c := dashboard(t, &fakeFleet{})
	for _, path := range []string{"/", "/static/ui.css", "/?token=wrong"} {
		if resp, body := get(t, c, base+path, nil); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "fleetctl ui printed") {
			t.Errorf("GET %s without the token: %s, want 401 saying where the token is", path, resp.Status)
		}
	}
	cookie := login(t, srv, base, c)
	resp, body := get(t, c, base+"/", cookie)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "nas2") {
		t.Fatalf("GET / logged in: %s, want 200 listing nas2:\n%s", resp.Status, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q, want default-src 'self'", csp)
	}
	if resp, body := get(t, c, base+"/?fragment=live", cookie); resp.StatusCode != http.StatusOK || strings.Contains(body, "<html") || !strings.Contains(body, "nas2") {
		t.Errorf("the live fragment: %s, want the members without the page around them:\n%s", resp.Status, body)
	}
}

func TestHostMustBeLoopback(t *testing.T) {
	srv, base, c := dashboard(t, &fakeFleet{})
	cookie := login(t, srv, base, c)
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Host = "attacker.example"
	req.AddCookie(cookie)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host attacker.example: %s, want 421", resp.Status)
	}
}

func post(t *testing.T, c *http.Client, base, path string, form url.Values, cookie *http.Cookie, site string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", site)
	if site == "same-origin" {
		req.Header.Set("Origin", base)
	} else {
		req.Header.Set("Origin", "http://attacker.example")
	}
	req.AddCookie(cookie)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestSwitchoverNeedsConfirmationAndSameOrigin(t *testing.T) {
	f := &fakeFleet{}
	srv, base, c := dashboard(t, f)
	cookie := login(t, srv, base, c)
	form := url.Values{"share": {"projects"}, "to": {"nas2"}, "confirm": {"projects"}}
	if resp, _ := post(t, c, base, "/failover", form, cookie, "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site POST: %s, want 403", resp.Status)
	}
	if _, body := post(t, c, base, "/failover", url.Values{"share": {"projects"}, "to": {"nas2"}}, cookie, "same-origin"); !strings.Contains(body, `name="confirm"`) {
		t.Errorf("the first POST should ask for the share's name:\n%s", body)
	}
	if _, body := post(t, c, base, "/failover", url.Values{"share": {"projects"}, "to": {"nas2"}, "confirm": {"yes"}}, cookie, "same-origin"); !strings.Contains(body, "Not switched") {
		t.Errorf("a wrong confirmation should switch nothing:\n%s", body)
	}
	if len(f.failovers) != 0 {
		t.Fatalf("switched before a right confirmation: %v", f.failovers)
	}
	if _, body := post(t, c, base, "/failover", form, cookie, "same-origin"); !strings.Contains(body, "projects is now active on nas2 (epoch 1)") {
		t.Errorf("the confirmed switchover's page:\n%s", body)
	}
	if len(f.failovers) != 1 || f.failovers[0] != "projects→nas2" {
		t.Fatalf("failovers %v, want [projects→nas2]", f.failovers)
	}
}

const spec = `version: 1
appliances:
  - name: nas1
    address: 127.0.0.1:7401
    pools: [{name: tank, path: /srv/tank}]
shares:
  - name: old
    appliance: nas1
    pool: tank
    state: absent
`

func TestApplyAsksForApproval(t *testing.T) {
	f := &fakeFleet{}
	srv, base, c := dashboard(t, f)
	cookie := login(t, srv, base, c)
	_, body := post(t, c, base, "/plan/apply", url.Values{"yaml": {spec}, "generation": {"3"}}, cookie, "same-origin")
	if !strings.Contains(body, "delete:old") || !strings.Contains(body, `name="approve" value="delete:old"`) {
		t.Fatalf("an apply the leader wants approved should list the hazard and carry its approval:\n%s", body)
	}
	approve := url.Values{"yaml": {spec}, "generation": {"3"}, "approve": {"delete:old"}, "want": {"old"}, "confirm": {"yes"},
		"hazard_kind": {schema.HazardDelete}, "hazard_name": {"old"}, "hazard_reason": {"share old is DELETED"}}
	if _, body := post(t, c, base, "/plan/apply", approve, cookie, "same-origin"); !strings.Contains(body, "Not approved") {
		t.Errorf("a wrong confirmation should send nothing:\n%s", body)
	}
	approve.Set("confirm", "old")
	if _, body := post(t, c, base, "/plan/apply", approve, cookie, "same-origin"); !strings.Contains(body, "Applied as generation 4") {
		t.Errorf("the approved apply's page:\n%s", body)
	}
	if len(f.applies) != 2 || f.applies[1].ExpectedGeneration != 3 || strings.Join(f.applies[1].Approve, ",") != "delete:old" {
		t.Fatalf("applies %+v, want an unapproved one, then one approving delete:old at generation 3", f.applies)
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:8470": true, "localhost:8470": true, "[::1]:8470": true, "127.0.0.2": true, "::1": true,
		"0.0.0.0:8470": false, "192.168.1.10:8470": false, "nas1:8470": false, "": false, "[::]:8470": false,
	} {
		if got := ui.IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// A running send shows its bytes, and from the second look on its rate.
func TestReplicationShowsSendRate(t *testing.T) {
	srv, base, c := dashboard(t, &fakeFleet{sending: true})
	cookie := login(t, srv, base, c)
	_, first := get(t, c, base+"/replication?fragment=live", cookie)
	if !strings.Contains(first, "sending, 10.0 MiB so far</span>") {
		t.Errorf("first look: want the bytes and no rate yet:\n%s", first)
	}
	_, second := get(t, c, base+"/replication?fragment=live", cookie)
	if !regexp.MustCompile(`sending, 20\.0 MiB so far, [0-9.]+ [KMGT]?i?B/s`).MatchString(second) {
		t.Errorf("second look: want the bytes and a rate:\n%s", second)
	}
}
