package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fleetctl/fleetctl/reconcile/looppool"
	"github.com/fleetctl/fleetctl/schema"
)

// TestMain lets the test binary act as fleetctl inside testscript scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"fleetctl": func() {
			os.Exit(run(os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
		},
	})
}

// TestScripts runs the end-to-end scripts in testdata/ against the real
// fleetctl binary.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(t, "../../testdata"))
}

func scriptParams(t *testing.T, dir string) testscript.Params {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return testscript.Params{
		Dir: dir,
		Setup: func(e *testscript.Env) error {
			// Scripts reach the repository's example files as $REPO.
			e.Setenv("REPO", root+"/../..")
			// Agents in scripts listen on 127.0.0.1 at $PORT1..$PORT9,
			// ports free when the script starts.
			for i := 1; i <= 9; i++ {
				port, err := freePort()
				if err != nil {
					return err
				}
				e.Setenv(fmt.Sprintf("PORT%d", i), strconv.Itoa(port))
			}
			e.Setenv("NO_COLOR", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":         cmdExits,
			"envfile":       cmdEnvfile,
			"waitfor":       cmdWaitfor,
			"looppool":      cmdLooppool,
			"envsubst":      cmdEnvsubst,
			"netns":         cmdNetns,
			"lan":           cmdLan,
			"watchwritable": cmdWatchWritable,
			"damage":        cmdDamage,
			"notifysocket":  cmdNotifysocket,
			"notified":      cmdNotified,
			"browser":       cmdBrowser,
			"httpstatus":    cmdHTTPStatus,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "chromium" {
				// [chromium]: a headless Chromium can drive the dashboard.
				// On CI it must: a skipped browser script is a failure.
				_, err := chromiumPath()
				if err != nil && os.Getenv("CI") == "true" {
					return false, fmt.Errorf("browser script cannot run on CI: %w", err)
				}
				return err == nil, nil
			}
			if cond == "prometheus" {
				// [prometheus]: Prometheus and its promtool are installed
				// (Debian's prometheus package; scripts/test.sh installs
				// it). On CI they must be: a skipped check is a failure.
				_, err := exec.LookPath("promtool")
				if err == nil {
					_, err = exec.LookPath("prometheus")
				}
				if err != nil && os.Getenv("CI") == "true" {
					return false, fmt.Errorf("prometheus and promtool are needed on CI (apt-get install prometheus): %w", err)
				}
				return err == nil, nil
			}
			if cond != "btrfs" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			// [btrfs]: loop-mounted btrfs pools can be made here. On CI
			// they must be: a skipped real-btrfs script is a failure.
			err := looppool.Available()
			if err != nil && os.Getenv("CI") == "true" {
				return false, fmt.Errorf("real-btrfs script cannot run on CI: %w", err)
			}
			return err == nil, nil
		},
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
	}
}

// cmdExits runs a program and checks its exact exit code:
//
//	exits 1 fleetctl validate -f bad.yaml
//
// Its stdout and stderr are kept for the stdout and stderr commands that
// follow, as with exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exits (write the expected code instead)")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %q is not an exit code", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// cmdEnvfile sets an environment variable to a file's content, without
// surrounding space:
//
//	envfile TOKEN d1/join-token
func cmdEnvfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: envfile NAME FILE")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
}

// cmdDamage damages a file the way a disk or an operator might:
//
//	damage half d1/raft.db    truncate to half its size
//	damage garble d1/raft.db  overwrite all past the first two pages (bbolt's meta pages)
//	damage empty d1/raft.db   truncate to 0 bytes
//
// The garbage is the same on every run.
func cmdDamage(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: damage half|garble|empty FILE")
	}
	path := ts.MkAbs(args[1])
	fi, err := os.Stat(path)
	ts.Check(err)
	switch args[0] {
	case "half":
		// Half of what bbolt uses (its meta pages' high-water mark), not
		// of the file: bbolt grows the file ahead of its pages, and a cut
		// in the unused tail loses nothing.
		ts.Check(os.Truncate(path, boltUsed(ts, path, fi.Size())/2))
	case "empty":
		ts.Check(os.Truncate(path, 0))
	case "garble":
		b, err := os.ReadFile(path)
		ts.Check(err)
		rnd := mrand.New(mrand.NewPCG(1, 2))
		for i := 2 * os.Getpagesize(); i < len(b); i++ {
			b[i] = byte(rnd.Uint32())
		}
		ts.Check(os.WriteFile(path, b, fi.Mode()))
	default:
		ts.Fatalf("damage: %q is not half, garble or empty", args[0])
	}
}

// boltUsed is how many bytes of the bbolt file at path its pages reach,
// by the higher of its two meta pages (page size at byte 24 of a page,
// high-water page id at byte 56); size when they cannot be read.
func boltUsed(ts *testscript.TestScript, path string, size int64) int64 {
	b, err := os.ReadFile(path)
	ts.Check(err)
	used := int64(0)
	for _, off := range []int{0, 4096} {
		if len(b) < off+64 {
			return size
		}
		psz := int64(binary.LittleEndian.Uint32(b[off+24:]))
		hwm := int64(binary.LittleEndian.Uint64(b[off+56:]))
		used = max(used, psz*hwm)
	}
	if used <= 0 || used > size {
		return size
	}
	return used
}

// handedOut are the ports freePort has returned in this test process:
// never returned twice, so two agents of one script, or of two scripts
// running in parallel, never get the same one.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other script of this run was given.
func freePort() (int, error) {
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no free port not handed out already in 100 tries")
}

// cmdWaitfor runs a program again and again until it exits 0 with stdout
// matching a regular expression, or the time is up:
//
//	waitfor 30s 'n3 +voter' fleetctl status --data-dir d1
//
// The last run's stdout and stderr are kept for the commands that follow.
func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: waitfor TIMEOUT REGEXP PROGRAM [ARGS...]")
	}
	limit, err := time.ParseDuration(args[0])
	if err != nil {
		ts.Fatalf("waitfor: %v", err)
	}
	re, err := regexp.Compile("(?m)" + args[1])
	if err != nil {
		ts.Fatalf("waitfor: %v", err)
	}
	deadline := time.Now().Add(limit)
	for {
		err := ts.Exec(args[2], args[3:]...)
		if err == nil && re.MatchString(ts.ReadFile("stdout")) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfor: no run of %s matched %q within %v (last error: %v)", args[2], args[1], limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cmdLooppool makes a loop-mounted btrfs pool for the script (256MiB, or
// the size given), sets a variable to its mount path, and removes it when
// the script ends:
//
//	looppool POOL1 n1-tank [1GiB]
func cmdLooppool(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: looppool VAR NAME [SIZE]")
	}
	var size schema.Quota
	if len(args) == 3 {
		if err := size.UnmarshalText([]byte(args[2])); err != nil {
			ts.Fatalf("looppool: %v", err)
		}
	}
	dir := ts.MkAbs("pools")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		ts.Fatalf("looppool: %v", err)
	}
	p, err := looppool.Create(context.Background(), dir, args[1], int64(size))
	if err != nil {
		ts.Fatalf("looppool: %v", err)
	}
	ts.Defer(func() {
		if err := p.Close(); err != nil {
			ts.Logf("looppool %s left behind: %v", args[1], err)
		}
	})
	ts.Setenv(args[0], p.Path())
}

// cmdEnvsubst replaces $VAR and ${VAR} in files with the script's
// variables, in place:
//
//	envsubst fleet.yaml
func cmdEnvsubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: envsubst FILE...")
	}
	for _, f := range args {
		s := os.Expand(ts.ReadFile(f), ts.Getenv)
		if err := os.WriteFile(ts.MkAbs(f), []byte(s), 0o666); err != nil {
			ts.Fatalf("envsubst: %v", err)
		}
	}
}

// cmdNetns makes a network namespace joined to this one by a veth pair, for
// cutting an agent off the others, and removes it when the script ends:
//
//	netns LABEL HOSTVAR NSVAR
//
// sets HOSTVAR to this side's address and NSVAR to the namespace side's,
// NSVAR_NETNS to the namespace's name and NSVAR_LINK to this side's
// interface. Every name and the subnet are new for each run, so runs of the
// same script at once (other checkouts, -count) do not meet. Run an agent
// in it with: exec ip netns exec $NS1_NETNS fleetctl agent ...; cut and heal
// with: exec ip link set $NS1_LINK down|up
func cmdNetns(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: netns LABEL HOSTVAR NSVAR")
	}
	var err error
	for range 20 {
		var n *netnsPair
		if n, err = makeNetns(args[0]); err == nil {
			ts.Defer(n.remove)
			ts.Setenv(args[1], n.hostIP)
			ts.Setenv(args[2], n.nsIP)
			ts.Setenv(args[2]+"_NETNS", n.ns)
			ts.Setenv(args[2]+"_LINK", n.host)
			return
		}
		if !errors.Is(err, errNetnsTaken) {
			break
		}
	}
	ts.Fatalf("netns: %v", err)
}

// cmdLan makes network namespaces that stand in for boxes on one LAN: a
// namespace of its own holds a bridge (the switch), and each box's
// namespace has a veth to it and an address in 10.203.0.0/24. Nothing of
// it touches this namespace's interfaces, routes or firewall, so any
// address is free to use:
//
//	lan LABEL VAR...
//
// sets each VAR to its box's address, VAR_NETNS to its namespace and
// VAR_LINK to its cable on the switch (ip -n $LAN_NETNS link set
// $VAR_LINK down unplugs it); LAN_NETNS is the switch's namespace. All
// of it is removed when the script ends.
func cmdLan(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 9 {
		ts.Fatalf("usage: lan LABEL VAR... (1 to 8 boxes)")
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		ts.Fatalf("lan: %v", err)
	}
	id := hex.EncodeToString(b[:])
	sw := "fl-" + args[0] + "-" + id
	if _, err := ipCmd("netns", "add", sw); err != nil {
		ts.Fatalf("lan: %v", err)
	}
	made := []string{sw}
	ts.Defer(func() {
		for _, ns := range made {
			_, _ = ipCmd("netns", "del", ns)
		}
	})
	steps := [][]string{
		{"-n", sw, "link", "add", "br0", "type", "bridge"},
		{"-n", sw, "link", "set", "br0", "up"},
	}
	for i, v := range args[1:] {
		ns := fmt.Sprintf("%s-%d", sw, i+1)
		if _, err := ipCmd("netns", "add", ns); err != nil {
			ts.Fatalf("lan: %v", err)
		}
		made = append(made, ns)
		cable, port := fmt.Sprintf("c%s%d", id, i+1), fmt.Sprintf("p%s%d", id, i+1)
		ip := fmt.Sprintf("10.203.0.%d", i+11)
		steps = append(steps,
			[]string{"-n", sw, "link", "add", cable, "type", "veth", "peer", "name", port},
			[]string{"-n", sw, "link", "set", port, "netns", ns},
			[]string{"-n", sw, "link", "set", cable, "master", "br0"},
			[]string{"-n", sw, "link", "set", cable, "up"},
			[]string{"-n", ns, "addr", "add", ip + "/24", "dev", port},
			[]string{"-n", ns, "link", "set", port, "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
		)
		ts.Setenv(v, ip)
		ts.Setenv(v+"_NETNS", ns)
		ts.Setenv(v+"_LINK", cable)
	}
	for _, step := range steps {
		if out, err := ipCmd(step...); err != nil {
			ts.Fatalf("lan: ip %s: %v: %s", strings.Join(step, " "), err, out)
		}
	}
	ts.Setenv("LAN_NETNS", sw)
}

// netnsPair is a network namespace and the veth pair joining it to this
// one, with a /30 of 10.201.0.0/16 on it.
type netnsPair struct {
	ns, host, peer string
	hostIP, nsIP   string
}

// errNetnsTaken says a random name or subnet was in use: try others.
var errNetnsTaken = errors.New("name or subnet in use")

// makeNetns makes a namespace with random names (interface names are at
// most 15 bytes: fc<6 hex>h) and a random /30 no interface here has an
// address in. Two runs picking the same /30 at the same moment is caught
// by looking again after the address is set.
func makeNetns(label string) (*netnsPair, error) {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(b[:3])
	third, block := int(b[3]), int(b[4])%64*4
	n := &netnsPair{
		ns:     "fc-" + label + "-" + id,
		host:   "fc" + id + "h",
		peer:   "fc" + id + "n",
		hostIP: fmt.Sprintf("10.201.%d.%d", third, block+1),
		nsIP:   fmt.Sprintf("10.201.%d.%d", third, block+2),
	}
	subnet := &net.IPNet{IP: net.IPv4(10, 201, byte(third), byte(block)).To4(), Mask: net.CIDRMask(30, 32)}
	if users, err := subnetUsers(subnet); err != nil {
		return nil, err
	} else if len(users) > 0 {
		return nil, fmt.Errorf("%s: %w", subnet, errNetnsTaken)
	}
	if _, err := ipCmd("netns", "add", n.ns); err != nil {
		return nil, fmt.Errorf("%w: %w", errNetnsTaken, err)
	}
	steps := [][]string{
		{"link", "add", n.host, "type", "veth", "peer", "name", n.peer},
		{"link", "set", n.peer, "netns", n.ns},
		{"addr", "add", n.hostIP + "/30", "dev", n.host},
		{"link", "set", n.host, "up"},
		{"netns", "exec", n.ns, "ip", "addr", "add", n.nsIP + "/30", "dev", n.peer},
		{"netns", "exec", n.ns, "ip", "link", "set", n.peer, "up"},
		{"netns", "exec", n.ns, "ip", "link", "set", "lo", "up"},
	}
	for _, step := range steps {
		if _, err := ipCmd(step...); err != nil {
			n.remove()
			return nil, err
		}
	}
	users, err := subnetUsers(subnet)
	if err != nil {
		n.remove()
		return nil, err
	}
	if len(users) != 1 || users[0] != n.host {
		n.remove()
		return nil, fmt.Errorf("%s, also on %v: %w", subnet, users, errNetnsTaken)
	}
	return n, nil
}

// remove deletes the pair and the namespace.
func (n *netnsPair) remove() {
	_, _ = ipCmd("link", "del", n.host)
	_, _ = ipCmd("netns", "del", n.ns)
}

// subnetUsers lists the interfaces of this namespace with an IPv4 address
// in subnet.
func subnetUsers(subnet *net.IPNet) ([]string, error) {
	out, err := ipCmd("-o", "-4", "addr", "show")
	if err != nil {
		return nil, err
	}
	var users []string
	for _, line := range strings.Split(out, "\n") {
		// 5: fc1a2b3ch    inet 10.201.7.1/30 scope global fc1a2b3ch ...
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		ip, _, err := net.ParseCIDR(f[3])
		if err == nil && subnet.Contains(ip) {
			users = append(users, strings.TrimSuffix(f[1], ":"))
		}
	}
	return users, nil
}

// ipCmd runs ip(8) with args.
func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
