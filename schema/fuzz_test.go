package schema_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fleetctl/fleetctl/schema"
)

// FuzzParse checks that Parse never panics, that every failure is a non-empty
// Errors of well-formed entries, and that a spec it accepts survives being
// written back with yaml.Marshal: the result parses and writes the same.
func FuzzParse(f *testing.F) {
	for _, file := range acceptedFiles(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatalf("read %s: %v", file, err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"# only a comment\n",
		"a: [b\n",
		"- version: 1\n",
		"version: 1\nappliances:\n\t- name: nas1\n",
		"version: 1\nappliances:\n  - name: nas1\n    address: nas1:7400\n---\nversion: 1\n",
		"version: 1\nappliances:\n  - &a {name: nas1, address: \"nas1:7400\"}\n  - <<: *a\n    name: nas2\n",
		"version: 1\nappliances: [{name: nas1, address: \"nas1:7400\", pools: [{name: t, path: /t}]}]\nshares: [{name: s, appliance: nas1, pool: t, quota: 1G, snapshots: {schedule: \"0 0 13 * fri\", retention: \"*d 0w\"}}]\n",
		"version: 1\nwitness: {failover_after: 4s, fence_after: 1ns}\nappliances: [{name: n, address: \":0\", role: witness, pools: [{name: .., path: x/}]}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := schema.Parse("fuzz.yaml", data)
		if err != nil {
			checkErrors(t, err)
			return
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("yaml.Marshal of an accepted spec: %v", err)
		}
		s2, err := schema.Parse("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("the accepted spec, written back, does not parse:\n%v\ninput:\n%s\nwritten back:\n%s", err, data, out)
		}
		out2, err := yaml.Marshal(s2)
		if err != nil {
			t.Fatalf("yaml.Marshal of the re-parsed spec: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("writing back is not stable\nfirst:\n%s\nsecond:\n%s", out, out2)
		}
	})
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	var errs schema.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse returned %T (%v), want schema.Errors", err, err)
	}
	if len(errs) == 0 {
		t.Fatalf("Parse returned an empty Errors")
	}
	for i, e := range errs {
		if e == nil {
			t.Fatalf("error %d is nil", i)
		}
		if e.File != "fuzz.yaml" || e.Message == "" || e.Line < 0 || e.Column < 0 {
			t.Fatalf("malformed error %d: %+v", i, *e)
		}
		if i > 0 && (e.Line < errs[i-1].Line || e.Line == errs[i-1].Line && e.Column < errs[i-1].Column) {
			t.Fatalf("errors not in file order:\n%v", err)
		}
	}
}
