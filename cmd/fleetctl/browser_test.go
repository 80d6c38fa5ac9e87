package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/rogpeppe/go-internal/testscript"
)

// chromiumPath is the Chromium (or Chrome) the dashboard's scripts drive,
// or an error saying there is none.
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH (apt-get install chromium; scripts/test.sh installs it)")
}

// browsers are the scripts' browsers, one per script.
var (
	browsersMu sync.Mutex
	browsers   = map[*testscript.TestScript]*browser{}
)

// browser is one headless Chromium, logged in to one dashboard.
type browser struct {
	ctx  context.Context // the tab's chromedp context
	base string          // the dashboard's http://HOST:PORT
}

// stepTimeout bounds one browser step that does not say otherwise.
const stepTimeout = 30 * time.Second

// cmdBrowser drives a headless Chromium through the dashboard, for the
// dashboard's scripts:
//
//	browser login URLFILE            start it and open the login URL in URLFILE
//	browser go PATH                  open a page of the dashboard
//	browser text SELECTOR REGEXP [TIMEOUT]  wait until the element's text matches
//	browser click SELECTOR           click (a link or a button)
//	browser fill SELECTOR FILE|-TEXT set a field to a file's content, or to TEXT
//	browser shot NAME [dark]         screenshot the page to $FLEETCTL_UI_SCREENSHOTS/NAME.png
//
// Every wait is bounded: TIMEOUT, or 30s.
func cmdBrowser(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: browser login|go|text|click|fill|shot ARGS...")
	}
	browsersMu.Lock()
	b := browsers[ts]
	browsersMu.Unlock()
	if args[0] != "login" && b == nil {
		ts.Fatalf("browser %s: no browser yet (browser login URLFILE first)", args[0])
	}
	switch args[0] {
	case "login":
		if len(args) != 2 || b != nil {
			ts.Fatalf("usage: browser login URLFILE (once per script)")
		}
		b = startBrowser(ts, strings.TrimSpace(ts.ReadFile(args[1])))
		browsersMu.Lock()
		browsers[ts] = b
		browsersMu.Unlock()
	case "go":
		if len(args) != 2 {
			ts.Fatalf("usage: browser go PATH")
		}
		b.do(ts, stepTimeout, chromedp.Navigate(b.base+args[1]), chromedp.WaitVisible(chromedp.CSS("main")))
	case "text":
		if len(args) < 3 || len(args) > 4 {
			ts.Fatalf("usage: browser text SELECTOR REGEXP [TIMEOUT]")
		}
		limit := stepTimeout
		if len(args) == 4 {
			d, err := time.ParseDuration(args[3])
			ts.Check(err)
			limit = d
		}
		b.waitText(ts, args[1], args[2], limit)
	case "click":
		if len(args) != 2 {
			ts.Fatalf("usage: browser click SELECTOR")
		}
		b.do(ts, stepTimeout, chromedp.Click(chromedp.CSS(args[1]), chromedp.NodeVisible))
	case "fill":
		if len(args) != 3 {
			ts.Fatalf("usage: browser fill SELECTOR FILE|-TEXT")
		}
		text, ok := strings.CutPrefix(args[2], "-")
		if !ok {
			text = ts.ReadFile(args[2])
		}
		b.do(ts, stepTimeout, chromedp.SetValue(chromedp.CSS(args[1]), text, chromedp.NodeVisible))
	case "shot":
		if len(args) < 2 || len(args) > 3 {
			ts.Fatalf("usage: browser shot NAME [dark]")
		}
		b.shot(ts, args[1], len(args) == 3 && args[2] == "dark")
	default:
		ts.Fatalf("browser: unknown step %q", args[0])
	}
}

// startBrowser starts a headless Chromium for the script and logs it in
// with the dashboard's login URL; it is stopped when the script ends.
func startBrowser(ts *testscript.TestScript, loginURL string) *browser {
	path, err := chromiumPath()
	if err != nil {
		ts.Fatalf("browser: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container has no user namespaces for it
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ts.Defer(func() {
		cancelTab()
		cancelAlloc()
		browsersMu.Lock()
		delete(browsers, ts)
		browsersMu.Unlock()
	})
	// The first run starts the browser; it lives as long as ctx, so it
	// gets no timeout of its own (the steps after it do).
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		ts.Check(err)
	case <-time.After(60 * time.Second):
		ts.Fatalf("browser: chromium did not start within 60s")
	}
	i := strings.Index(loginURL, "/?token=")
	if i < 0 {
		ts.Fatalf("browser: %q is not a login URL", loginURL)
	}
	b := &browser{ctx: ctx, base: loginURL[:i]}
	b.do(ts, stepTimeout, chromedp.Navigate(loginURL), chromedp.WaitVisible(chromedp.CSS("main")))
	loc, err := b.run(stepTimeout, chromedp.Location())
	ts.Check(err)
	if strings.Contains(loc, "token=") {
		ts.Fatalf("browser: after login the address still holds the token: %s", loc)
	}
	return b
}

// runIn runs one action in b with a timeout.
func runIn[T any](b *browser, limit time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, limit)
	defer cancel()
	return chromedp.Run(ctx, a)
}

func (b *browser) run(limit time.Duration, a chromedp.Action[string]) (string, error) {
	return runIn(b, limit, a)
}

// do runs steps within limit.
func (b *browser) do(ts *testscript.TestScript, limit time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	if _, err := runIn(b, limit, chromedp.Steps(steps...)); err != nil {
		ts.Fatalf("browser: %v", err)
	}
}

// waitText waits until the text of the element sel matches re, reading it
// again and again (the live parts of the pages are replaced as they
// refresh) until limit has passed.
func (b *browser) waitText(ts *testscript.TestScript, sel, expr string, limit time.Duration) {
	re, err := regexp.Compile("(?m)" + expr)
	ts.Check(err)
	deadline := time.Now().Add(limit)
	var last string
	var lastErr error
	for {
		left := time.Until(deadline)
		if left <= 0 {
			ts.Logf("last text of %s: %q (error: %v)", sel, last, lastErr)
			ts.Fatalf("browser: the text of %s did not match %q within %v", sel, expr, limit)
		}
		last, lastErr = runIn(b, min(left, 5*time.Second), chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		if lastErr == nil && re.MatchString(last) {
			ts.Logf("%s: %s", sel, strings.TrimSpace(last))
			return
		}
		if lastErr == nil {
			// The text is there but not yet what is awaited: a live
			// page refreshes every few seconds; look again shortly.
			select {
			case <-b.ctx.Done():
				ts.Fatalf("browser: %v", b.ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// shot saves a screenshot of the whole page to
// $FLEETCTL_UI_SCREENSHOTS/NAME.png when that is set (the README's
// images), in the dark colour scheme with dark.
func (b *browser) shot(ts *testscript.TestScript, name string, dark bool) {
	dir := os.Getenv("FLEETCTL_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	b.do(ts, stepTimeout, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
	png, err := runIn(b, stepTimeout, chromedp.FullScreenshot(100))
	ts.Check(err)
	ts.Check(os.MkdirAll(dir, 0o755))
	ts.Check(os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// cmdHTTPStatus checks the status of a plain GET, without cookies:
//
//	httpstatus 401 http://127.0.0.1:$PORT4/
func cmdHTTPStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: httpstatus CODE URL")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[1], nil)
	ts.Check(err)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	ts.Check(err)
	resp.Body.Close()
	if resp.StatusCode != want {
		ts.Fatalf("GET %s: %s, want %d", args[1], resp.Status, want)
	}
	fmt.Fprintf(ts.Stdout(), "%d\n", resp.StatusCode)
}
