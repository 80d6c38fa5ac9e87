//go:build cpuprofile

package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// This file is built only with -tags cpuprofile (scripts/bench-scale.sh
// builds such a binary when PROFILE=1). With FLEETCTL_CPUPROFILE=FILE in
// its environment, a process starts a CPU profile at SIGUSR1 and writes it
// to FILE at the next SIGUSR2, with a heap profile to FILE.heap, so a
// benchmark can profile exactly the window it measures. It opens no listener; a normal build has none of it.

func init() {
	path := os.Getenv("FLEETCTL_CPUPROFILE")
	if path == "" {
		return
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		for s := range sig {
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				var err error
				if f, err = os.Create(path); err != nil {
					fmt.Fprintln(os.Stderr, "cpuprofile:", err)
					continue
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					fmt.Fprintln(os.Stderr, "cpuprofile:", err)
					_ = f.Close()
					f = nil
				}
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				if err := f.Close(); err != nil {
					fmt.Fprintln(os.Stderr, "cpuprofile:", err)
				}
				f = nil
				if err := writeHeap(path + ".heap"); err != nil {
					fmt.Fprintln(os.Stderr, "cpuprofile:", err)
				}
			}
		}
	}()
}

// writeHeap writes the heap profile to path.
func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return nil
}
