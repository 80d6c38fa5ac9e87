package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/fleetctl/fleetctl/schema"
)

type validateCmd struct {
	File         string `short:"f" required:"" placeholder:"FILE" help:"The fleet spec to check; - reads standard input."`
	ShowDefaults bool   `help:"Print the spec with every default filled in (YAML, or the spec field with --output json)."`
	outputFlag   `embed:""`
}

func (validateCmd) Help() string {
	return `Checks a fleet.yaml without touching any appliance. Every problem is
reported at once, one per line, as FILE:LINE:COL: FIELD.PATH: MESSAGE.

Exit codes: 0 the spec is valid, 1 it is not, 2 the file could not be read.

Examples:
  fleetctl validate -f fleet.yaml
  fleetctl validate -f fleet.yaml --show-defaults
  cat fleet.yaml | fleetctl validate -f - --output json`
}

// validateReport is the --output json form of validate.
type validateReport struct {
	File   string        `json:"file"`
	Valid  bool          `json:"valid"`
	Errors schema.Errors `json:"errors"`
	// Summary counts what the spec holds; only for a valid spec.
	Summary *specSummary `json:"summary,omitempty"`
	// Spec is the spec with defaults, with --show-defaults on a valid spec.
	Spec any `json:"spec,omitempty"`
}

type specSummary struct {
	Fleet      string `json:"fleet"`
	Storage    int    `json:"storage_appliances"`
	Witnesses  int    `json:"witness_appliances"`
	Shares     int    `json:"shares"`
	Replicated int    `json:"replicated_shares"`
}

func summarize(s *schema.Spec) *specSummary {
	sum := &specSummary{Fleet: s.Fleet, Shares: len(s.Shares)}
	for _, a := range s.Appliances {
		if a.Role == schema.RoleWitness {
			sum.Witnesses++
		} else {
			sum.Storage++
		}
	}
	for _, sh := range s.Shares {
		if sh.Replication != nil {
			sum.Replicated++
		}
	}
	return sum
}

func (c *validateCmd) Run(e env) error {
	name, data, err := readSpecFile(c.File, e.stdin)
	if err != nil {
		return err
	}
	spec, perr := schema.Parse(name, data)
	var problems schema.Errors
	if perr != nil && !errors.As(perr, &problems) {
		return perr
	}
	rep := validateReport{File: name, Valid: perr == nil, Errors: problems}
	if rep.Errors == nil {
		rep.Errors = schema.Errors{}
	}
	if rep.Valid {
		rep.Summary = summarize(spec)
	}
	var defaultsYAML []byte
	if rep.Valid && c.ShowDefaults {
		if defaultsYAML, err = marshalYAML(spec); err != nil {
			return fmt.Errorf("writing the spec: %w", err)
		}
		if err := yaml.Unmarshal(defaultsYAML, &rep.Spec); err != nil {
			return fmt.Errorf("re-reading the spec: %w", err)
		}
	}

	if c.Output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if rep.Valid {
		if c.ShowDefaults {
			fmt.Fprintf(e.stdout, "# every default filled in by fleetctl validate --show-defaults\n%s", defaultsYAML)
		}
		s := rep.Summary
		fmt.Fprintf(e.stderr, "%s: valid: fleet %q, %s (%d storage, %d witness), %s (%d replicated)\n",
			name, s.Fleet, plural(s.Storage+s.Witnesses, "appliance"), s.Storage, s.Witnesses, plural(s.Shares, "share"), s.Replicated)
	} else {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p)
		}
		fmt.Fprintf(e.stderr, "%s: invalid: %s\n", name, plural(len(problems), "problem"))
	}
	if !rep.Valid {
		return exitError(exitFailed)
	}
	return nil
}

// readSpecFile reads a spec file, or standard input for "-", reading at most
// one byte past schema.MaxFileSize so that schema.Parse can say it is too big.
func readSpecFile(path string, stdin io.Reader) (name string, data []byte, err error) {
	name = path
	r := stdin
	if path == "-" {
		name = "<stdin>"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return name, nil, fmt.Errorf("reading the spec: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err = io.ReadAll(io.LimitReader(r, schema.MaxFileSize+1))
	if err != nil {
		return name, nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return name, data, nil
}

// marshalYAML writes v as YAML indented by two spaces, as fleet.yaml files are.
func marshalYAML(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
