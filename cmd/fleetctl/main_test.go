package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/reconcile/looppool"
	"github.com/fleetctl/fleetctl/schema"
	"github.com/rogpeppe/go-internal/testscript"
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
			"watchwritable": cmdWatchWritable,
		},
		Condition: func(cond string) (bool, error) {
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

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
//	netns NS HOSTVAR NSVAR
//
// sets HOSTVAR to this side's address and NSVAR to the namespace side's
// (10.201.N.1 and 10.201.N.2, on interfaces only this script uses). Cut
// and heal with: exec ip link set fc-NS-h down|up
func cmdNetns(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: netns NS HOSTVAR NSVAR")
	}
	ns, host := "fc-"+args[0], "fc-"+args[0]+"-h"
	peer := "fc-" + args[0] + "-n"
	n := 1 + os.Getpid()%250
	run := func(cmd ...string) {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			ts.Fatalf("%s: %v: %s", strings.Join(cmd, " "), err, out)
		}
	}
	_ = exec.Command("ip", "netns", "del", ns).Run() // a crashed run's leftover
	_ = exec.Command("ip", "link", "del", host).Run()
	hostIP, nsIP := fmt.Sprintf("10.201.%d.1", n), fmt.Sprintf("10.201.%d.2", n)
	run("ip", "netns", "add", ns)
	ts.Defer(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	run("ip", "link", "set", peer, "netns", ns)
	run("ip", "addr", "add", hostIP+"/30", "dev", host)
	run("ip", "link", "set", host, "up")
	run("ip", "netns", "exec", ns, "ip", "addr", "add", nsIP+"/30", "dev", peer)
	run("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
	run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	ts.Setenv(args[1], hostIP)
	ts.Setenv(args[2], nsIP)
}
