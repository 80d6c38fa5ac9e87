package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// completionScript runs fleetctl completion SHELL and writes the script
// to a file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{"completion", shell}, env{stdout: &out, stderr: &errOut}); code != 0 {
		t.Fatalf("fleetctl completion %s exited %d: %s", shell, code, errOut.String())
	}
	path := filepath.Join(t.TempDir(), "fleetctl."+shell)
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBashCompletion loads the bash script in a real bash and completes
// command lines as bash would on TAB: COMP_WORDS split as bash splits
// them (--flag=value as "--flag" "=" "value"), the cursor on the last.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	script := completionScript(t, "bash")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		words []string
		want  string
	}{
		{[]string{"fleetctl", "rep"}, "replicate replication"},
		{[]string{"fleetctl", "members", "re"}, "remove"},
		{[]string{"fleetctl", "token", ""}, "create list revoke"},
		{[]string{"fleetctl", "completion", ""}, "bash zsh fish"},
		{[]string{"fleetctl", "status", "--out"}, "--output"},
		{[]string{"fleetctl", "status", "--output", ""}, "text json"},
		{[]string{"fleetctl", "status", "--output", "=", "j"}, "json"},
		{[]string{"fleetctl", "agent", "--log-level", "w"}, "warn"},
		{[]string{"fleetctl", "agent", "--data-dir", dir + "/da"}, dir + "/data"},
		{[]string{"fleetctl", "validate", "-f", dir + "/fl"}, dir + "/fleet.yaml"},
		{[]string{"fleetctl", "members", "remove", "--f"}, "--force"},
		{[]string{"fleetctl", "--vers"}, "--version"},
		{[]string{"fleetctl", "gua"}, ""}, // hidden
	}
	var prog strings.Builder
	prog.WriteString("source " + shQuote(script) + "\ncomplete -p fleetctl\n")
	for _, tc := range cases {
		var quoted []string
		for _, w := range tc.words {
			quoted = append(quoted, shQuote(w))
		}
		prog.WriteString("COMP_WORDS=(" + strings.Join(quoted, " ") + ")\n")
		prog.WriteString(`COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}` + "\n")
		prog.WriteString("_fleetctl; echo \"${COMPREPLY[*]}\"\n")
	}
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(cases)+1 {
		t.Fatalf("bash printed %d lines, want %d:\n%s", len(lines), len(cases)+1, out)
	}
	if lines[0] != "complete -F _fleetctl fleetctl" {
		t.Errorf("complete -p fleetctl = %q, want complete -F _fleetctl fleetctl", lines[0])
	}
	for i, tc := range cases {
		if got := lines[i+1]; got != tc.want {
			t.Errorf("completing %q: got %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
}

// TestZshCompletion checks that the zsh script is zsh, where zsh is
// installed, and names the commands.
func TestZshCompletion(t *testing.T) {
	script := completionScript(t, "zsh")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "#compdef fleetctl\n") || !strings.Contains(string(b), "'replicate:Replicate a share now") {
		t.Errorf("the zsh script lacks #compdef or the commands:\n%.400s", b)
	}
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("zsh is not installed: syntax not checked")
	}
	if out, err := exec.Command("zsh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
}

// TestFishCompletion checks the fish script, and where fish is installed
// completes command lines with it (fish's complete -C does what TAB does).
func TestFishCompletion(t *testing.T) {
	script := completionScript(t, "fish")
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish is not installed: not checked")
	}
	if out, err := exec.Command("fish", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("fish -n: %v\n%s", err, out)
	}
	for line, want := range map[string]string{
		"fleetctl rep":              "replicate\nreplication",
		"fleetctl members re":       "remove",
		"fleetctl status --output ": "json\ntext",
		"fleetctl completion ":      "bash\nfish\nzsh",
	} {
		out, err := exec.Command("fish", "--no-config", "-c", "source "+fishQuote(script)+"; complete -C "+fishQuote(line)).CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			name, _, _ := strings.Cut(l, "\t")
			got = append(got, name)
		}
		if strings.Join(got, "\n") != want {
			t.Errorf("fish completing %q: got %q, want %q", line, got, want)
		}
	}
}
