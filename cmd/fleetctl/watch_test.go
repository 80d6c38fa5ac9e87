package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// writeWatch samples whether two copies of a share are writable.
type writeWatch struct {
	paths [2]string
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	samples  int
	writable [2]int
	both     []string // when both were writable
}

var (
	watchesMu sync.Mutex
	watches   = map[string]*writeWatch{}
)

// cmdWatchWritable samples, every 100ms from start to check, whether two
// copies of a share accept a write, and fails check if both did in one
// sample: the promise "never two writable copies".
//
//	watchwritable start NAME PATH1 PATH2
//	watchwritable samples NAME COUNT TIMEOUT
//	watchwritable check NAME
//
// samples waits until the watch has taken COUNT samples (a soak of
// COUNT/10 seconds), failing after TIMEOUT. check prints how many samples
// found each copy writable and how many found the first one refusing.
func cmdWatchWritable(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: watchwritable start NAME PATH1 PATH2 | watchwritable check NAME")
	}
	key := ts.Getenv("WORK") + "/" + args[1]
	switch {
	case args[0] == "start" && len(args) == 4:
		w := &writeWatch{paths: [2]string{args[2], args[3]}, stop: make(chan struct{}), done: make(chan struct{})}
		watchesMu.Lock()
		watches[key] = w
		watchesMu.Unlock()
		go w.run()
		ts.Defer(func() {
			select {
			case <-w.stop:
			default:
				close(w.stop)
				<-w.done
			}
		})
	case args[0] == "check" && len(args) == 2:
		watchesMu.Lock()
		w := watches[key]
		delete(watches, key)
		watchesMu.Unlock()
		if w == nil {
			ts.Fatalf("watchwritable: no watch %q", args[1])
		}
		close(w.stop)
		<-w.done
		w.mu.Lock()
		defer w.mu.Unlock()
		ts.Logf("watchwritable %s: %d samples; %s writable in %d, %s writable in %d", args[1], w.samples, w.paths[0], w.writable[0], w.paths[1], w.writable[1])
		fmt.Fprintf(ts.Stdout(), "samples %d writable %d %d both %d refused-first %d\n", w.samples, w.writable[0], w.writable[1], len(w.both), w.samples-w.writable[0])
		if len(w.both) > 0 {
			ts.Fatalf("watchwritable %s: both copies were writable at %v", args[1], w.both)
		}
	case args[0] == "samples" && len(args) == 4:
		watchesMu.Lock()
		w := watches[key]
		watchesMu.Unlock()
		if w == nil {
			ts.Fatalf("watchwritable: no watch %q", args[1])
		}
		want, err := strconv.Atoi(args[2])
		if err != nil {
			ts.Fatalf("watchwritable: %v", err)
		}
		limit, err := time.ParseDuration(args[3])
		if err != nil {
			ts.Fatalf("watchwritable: %v", err)
		}
		deadline := time.Now().Add(limit)
		for {
			w.mu.Lock()
			n := w.samples
			w.mu.Unlock()
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				ts.Fatalf("watchwritable: %d samples within %v, want %d", n, limit, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	default:
		ts.Fatalf("usage: watchwritable start NAME PATH1 PATH2 | watchwritable samples NAME COUNT TIMEOUT | watchwritable check NAME")
	}
}

func (w *writeWatch) run() {
	defer close(w.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		a, b := writable(w.paths[0]), writable(w.paths[1])
		w.mu.Lock()
		w.samples++
		if a {
			w.writable[0]++
		}
		if b {
			w.writable[1]++
		}
		if a && b {
			w.both = append(w.both, time.Now().Format("15:04:05.000"))
		}
		w.mu.Unlock()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// writable says whether a new file can be made in dir.
func writable(dir string) bool {
	p := filepath.Join(dir, ".fc-watch-"+strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return false // EROFS when fenced, ENOENT when there is no copy
	}
	f.Close()
	os.Remove(p)
	return true
}
