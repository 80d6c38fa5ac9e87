package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rogpeppe/go-internal/testscript"
)

// systemdDir holds the example unit and its drop-ins.
const systemdDir = "../../examples/systemd"

// TestSystemdUnitVerifies runs systemd-analyze verify on the example unit
// with each first-start drop-in (bootstrap.conf, join.conf) and pools.conf,
// as an operator installs them: it must load without a warning. verify
// checks that each command's binary exists, so the copies point at this
// test's binary (which is fleetctl) instead of /usr/local/bin/fleetctl.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing (scripts/test.sh installs systemd): the example unit cannot be verified on CI")
		}
		t.Skip("systemd-analyze is missing (apt-get install systemd): the example unit is not verified")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, first := range []string{"bootstrap.conf", "join.conf"} {
		t.Run(first, func(t *testing.T) {
			dir := t.TempDir()
			dropins := filepath.Join(dir, "fleetctl-agent.service.d")
			if err := os.Mkdir(dropins, 0o755); err != nil {
				t.Fatal(err)
			}
			copyUnit(t, filepath.Join(systemdDir, "fleetctl-agent.service"), filepath.Join(dir, "fleetctl-agent.service"), exe)
			copyUnit(t, filepath.Join(systemdDir, first), filepath.Join(dropins, first), exe)
			copyUnit(t, filepath.Join(systemdDir, "pools.conf"), filepath.Join(dropins, "pools.conf"), exe)
			out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "fleetctl-agent.service")).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Fatalf("systemd-analyze verify fleetctl-agent.service with %s: %v\n%s", first, err, out)
			}
		})
	}
}

// copyUnit copies a unit file with /usr/local/bin/fleetctl replaced by exe.
func copyUnit(t *testing.T, src, dst, exe string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.ReplaceAll(string(b), "/usr/local/bin/fleetctl", exe))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdUnitCommandsParse parses every fleetctl command line of the
// unit and its drop-ins, with the variables agent.env sets and %d (the
// credentials directory) filled in: the flags must be fleetctl's, and
// the join token must come from a file, never argv.
func TestSystemdUnitCommandsParse(t *testing.T) {
	vars := strings.NewReplacer(
		"${FLEETCTL_LISTEN}", "10.0.0.2:7400",
		"${FLEETCTL_NAME}", "nas2",
		"${FLEETCTL_JOIN}", "10.0.0.1:7400",
		"${FLEETCTL_FLEET}", "office",
		"%d", "/run/credentials/fleetctl-agent.service",
	)
	line := regexp.MustCompile(`(?m)^Exec\w+=(/usr/local/bin/fleetctl .*)$`)
	files, err := filepath.Glob(filepath.Join(systemdDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range line.FindAllStringSubmatch(string(b), -1) {
			seen++
			args := strings.Fields(vars.Replace(m[1]))[1:]
			if strings.Contains(m[1], "$") {
				if unknown := regexp.MustCompile(`\$\{?\w+`).FindString(vars.Replace(m[1])); unknown != "" {
					t.Errorf("%s: %s uses %s, which agent.env does not set", f, m[1], unknown)
				}
			}
			if strings.Contains(m[1], "--token ") {
				t.Errorf("%s: %s puts the join token in argv", f, m[1])
			}
			var c cli
			parser, err := kong.New(&c, kong.Name("fleetctl"), kong.Exit(func(int) {}))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parser.Parse(args); err != nil {
				t.Errorf("%s: %s: %v", f, m[1], err)
			}
		}
	}
	if seen < 4 {
		t.Fatalf("found %d fleetctl command lines in %s, want at least 4", seen, systemdDir)
	}
}

// notifySocket is a unixgram socket standing in for systemd's
// NOTIFY_SOCKET in a script: it keeps every message it receives.
type notifySocket struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

// cmdNotifysocket listens on a new unixgram socket in the script's work
// dir and sets a variable to its path, for an agent's NOTIFY_SOCKET:
//
//	notifysocket SOCK
//	env NOTIFY_SOCKET=$SOCK
//
// 'notified' then waits for a message.
func cmdNotifysocket(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: notifysocket VAR")
	}
	path := ts.MkAbs("notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		ts.Fatalf("notifysocket: %v", err)
	}
	s := &notifySocket{conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			sc := bufio.NewScanner(strings.NewReader(string(buf[:n])))
			for sc.Scan() {
				s.msgs = append(s.msgs, sc.Text())
			}
			s.mu.Unlock()
		}
	}()
	notifySockets.Store(ts, s)
	ts.Defer(func() {
		conn.Close()
		notifySockets.Delete(ts)
	})
	ts.Setenv(args[0], path)
}

// notifySockets maps a running script to its notify socket.
var notifySockets sync.Map

// cmdNotified waits until the script's notify socket has received a line
// matching a regular expression, or the time is up; negated, it checks
// that none has come so far:
//
//	notified 30s '^READY=1$'
//	! notified 0s '^STOPPING=1$'
func cmdNotified(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: notified TIMEOUT REGEXP")
	}
	v, ok := notifySockets.Load(ts)
	if !ok {
		ts.Fatalf("notified: no notifysocket in this script")
	}
	s := v.(*notifySocket)
	limit, err := time.ParseDuration(args[0])
	if err != nil {
		ts.Fatalf("notified: %v", err)
	}
	re, err := regexp.Compile(args[1])
	if err != nil {
		ts.Fatalf("notified: %v", err)
	}
	deadline := time.Now().Add(limit)
	for {
		s.mu.Lock()
		msgs := append([]string(nil), s.msgs...)
		s.mu.Unlock()
		for _, m := range msgs {
			if re.MatchString(m) {
				if neg {
					ts.Fatalf("notified: %q came, matching %q", m, args[1])
				}
				return
			}
		}
		if neg {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("notified: no message matched %q within %v; got %q", args[1], limit, msgs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
