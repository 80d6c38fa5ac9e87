package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleetctl/fleetctl/agent/fence"
	"github.com/fleetctl/fleetctl/reconcile"
)

// guardCmd is the guard process `fleetctl agent` starts beside itself
// (package fence); nobody runs it by hand.
type guardCmd struct {
	DataDir string `name:"data-dir" required:"" placeholder:"DIR" help:"The agent's data dir."`
	Agent   int    `required:"" placeholder:"PID" help:"The agent's process ID."`
	Btrfs   string `default:"btrfs" placeholder:"PATH" help:"The btrfs command (btrfs-progs)."`
}

func (guardCmd) Help() string {
	return `Started by 'fleetctl agent', never by hand. It reads the agent's heartbeat
on file descriptor 3 (and holds the data dir's lock, inherited on 4) and
makes the agent's active replicated shares
read-only when the agent exits, or falls silent past its lease (then it also
stops the agent with SIGKILL, as a watchdog resets a hung machine). It runs
in a session of its own, so signals sent to the agent's process group do
not reach it.`
}

func (c *guardCmd) Run(e env) error {
	log := slog.New(slog.NewTextHandler(e.stderr, nil)).With("guard", c.Agent)
	// The agent's signals are not the guard's: it ends when the agent's
	// pipe closes, after fencing what must be fenced.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	beats := os.NewFile(3, "heartbeat")
	if _, err := beats.Stat(); err != nil {
		return fmt.Errorf("guard: no heartbeat pipe on file descriptor 3 (it is started by fleetctl agent): %w", err)
	}
	g := &fence.Guard{
		Beats:   beats,
		Driver:  reconcile.NewBtrfs(c.Btrfs),
		DataDir: c.DataDir,
		Kill: func() error {
			// Only its own agent: a process ID the kernel gave to another
			// process after the agent died is not its to kill.
			if os.Getppid() != c.Agent {
				return fmt.Errorf("the agent (pid %d) is no longer this guard's parent", c.Agent)
			}
			return syscall.Kill(c.Agent, syscall.SIGKILL)
		},
		Log: log,
	}
	// Fencing must end: the guard holds the data dir's lock, which a
	// restarted agent waits for.
	fenced, err := g.Run(context.Background())
	if err != nil {
		return fmt.Errorf("guard: fenced %s, but: %w", strings.Join(fenced, ", "), err)
	}
	return nil
}

// guardian starts the agent's guard process and restarts it if it dies
// while the agent runs; the agent's heartbeats go to the current one.
type guardian struct {
	dataDir, btrfs string
	lock           *os.File // the data dir's lock, held by the guard too
	log            *slog.Logger
	stderr         *os.File

	mu     sync.Mutex
	beater *fence.Beater
	exited chan struct{} // closed when the current guard process has exited
	done   chan struct{}
}

// startGuardian starts the guard; it returns once the first guard runs.
func startGuardian(dataDir, btrfs string, lock *os.File, log *slog.Logger) (*guardian, error) {
	g := &guardian{dataDir: dataDir, btrfs: btrfs, lock: lock, log: log, stderr: os.Stderr, done: make(chan struct{})}
	if err := g.spawn(); err != nil {
		return nil, err
	}
	return g, nil
}

// spawn starts one guard process with a new heartbeat pipe.
func (g *guardian) spawn() error {
	// The running binary itself, even if an upgrade replaced the file:
	// agent and guard speak the same heartbeat.
	const exe = "/proc/self/exe"
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start the guard: %w", err)
	}
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        []string{"fleetctl", "guard", "--data-dir", g.dataDir, "--agent", strconv.Itoa(os.Getpid()), "--btrfs", g.btrfs},
		ExtraFiles:  []*os.File{r, g.lock}, // fd 3 and 4
		Stdout:      g.stderr,
		Stderr:      g.stderr,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start the guard: %w", err)
	}
	r.Close()
	exited := make(chan struct{})
	g.mu.Lock()
	old := g.beater
	g.beater, g.exited = fence.NewBeater(w), exited
	g.mu.Unlock()
	if old != nil {
		old.Close() // the guard it fed is gone
	}
	select {
	case <-g.done:
		// Stop ran meanwhile and may have missed this guard: end it.
		g.beater.Close()
	default:
	}
	g.log.Info("guard started", "pid", cmd.Process.Pid)
	go g.watch(cmd, exited)
	return nil
}

// watch restarts the guard if it exits while the agent runs.
func (g *guardian) watch(cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	close(exited)
	select {
	case <-g.done:
		return
	default:
	}
	g.log.Error("the guard exited while the agent runs; starting a new one", "err", err)
	for {
		select {
		case <-g.done:
			return
		case <-time.After(time.Second):
		}
		err := g.spawn()
		if err == nil {
			return
		}
		g.log.Error("could not restart the guard; retrying", "err", err)
	}
}

// Beat passes a heartbeat to the current guard.
func (g *guardian) Beat(h fence.Heartbeat) {
	g.mu.Lock()
	b := g.beater
	g.mu.Unlock()
	if b != nil {
		b.Beat(h)
	}
}

// Announce passes a heartbeat to the current guard and returns once it is
// in the guard's pipe.
func (g *guardian) Announce(h fence.Heartbeat) error {
	g.mu.Lock()
	b := g.beater
	g.mu.Unlock()
	if b == nil {
		return errors.New("no guard is running")
	}
	return b.Announce(h, time.Second)
}

// Stop closes the heartbeat pipe, which the guard reads as the agent's
// exit: it fences whatever the last heartbeat said was writable (nothing
// once the node has shut down: its last beat says so) and ends. Stop
// waits for it.
func (g *guardian) Stop() {
	close(g.done)
	g.mu.Lock()
	b, exited := g.beater, g.exited
	g.mu.Unlock()
	if b != nil {
		b.Close()
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		g.log.Warn("the guard did not end within 15s of the agent's stop")
	}
}
