package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// TestEveryCommandExplainsItself walks every command of the CLI: each has a
// one-line help, a longer explanation, and --help that exits 0 and shows it.
func TestEveryCommandExplainsItself(t *testing.T) {
	var c cli
	parser, err := kong.New(&c, kong.Name("fleetctl"), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *kong.Node, path []string)
	seen := 0
	walk = func(n *kong.Node, path []string) {
		for _, child := range n.Children {
			p := append(append([]string{}, path...), child.Name)
			if child.Help == "" {
				t.Errorf("fleetctl %s has no one-line help", strings.Join(p, " "))
			}
			if len(child.Children) > 0 {
				walk(child, p)
				continue
			}
			seen++
			if child.Detail == "" {
				t.Errorf("fleetctl %s has no Help() explanation", strings.Join(p, " "))
			}
			var out, errOut bytes.Buffer
			code := run(append(p, "--help"), env{stdout: &out, stderr: &errOut})
			if code != 0 {
				t.Errorf("fleetctl %s --help exited %d, want 0; stderr: %s", strings.Join(p, " "), code, errOut.String())
			}
			if !strings.Contains(out.String(), "Usage: fleetctl "+strings.Join(p, " ")) || !strings.Contains(squash(out.String()), squash(firstLine(child.Detail))) {
				t.Errorf("fleetctl %s --help does not show its usage and explanation:\n%s", strings.Join(p, " "), out.String())
			}
		}
	}
	walk(parser.Model.Node, nil)
	if seen < 9 {
		t.Fatalf("walked %d commands, want at least 9", seen)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// squash joins words with single spaces, so wrapped text compares equal.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }
