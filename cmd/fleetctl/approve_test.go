package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fleetctl/fleetctl/schema"
)

// TestConfirm: on a terminal, apply goes ahead only on the exact answer:
// the name of the one thing at stake, or yes for several.
func TestConfirm(t *testing.T) {
	one := []schema.Hazard{{Kind: schema.HazardDelete, Name: "scratch"}}
	two := append(one, schema.Hazard{Kind: schema.HazardQuota, Name: "projects"})
	rename := []schema.Hazard{{Kind: schema.HazardReplaceAppliances}}
	cases := []struct {
		name   string
		hs     []schema.Hazard
		answer string
		want   bool
		prompt string
	}{
		{"the name", one, "scratch\n", true, "Type scratch to approve"},
		{"yes is not the name", one, "yes\n", false, "Type scratch"},
		{"several: yes", two, "yes\n", true, "Type yes to approve"},
		{"several: y is not yes", two, "y\n", false, "Type yes"},
		{"no name: yes", rename, " yes \n", true, "Type yes"},
		{"end of input", one, "", false, "Type scratch"},
		{"no newline", one, "scratch", true, "Type scratch"},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		if got := confirm(strings.NewReader(tc.answer), &out, tc.hs); got != tc.want {
			t.Errorf("%s: confirm = %v, want %v", tc.name, got, tc.want)
		}
		if !strings.Contains(out.String(), tc.prompt) {
			t.Errorf("%s: prompt %q does not say %q", tc.name, out.String(), tc.prompt)
		}
	}
}

func TestApprovalFlags(t *testing.T) {
	hs := []schema.Hazard{
		{Kind: schema.HazardRenameFleet, Name: "other"},
		{Kind: schema.HazardDelete, Name: "a"},
		{Kind: schema.HazardQuota, Name: "b"},
		{Kind: schema.HazardReplaceAppliances},
	}
	if got, want := approvalFlags(hs), "--approve=delete:a,quota:b --rename-fleet --replace-appliances"; got != want {
		t.Fatalf("approvalFlags: got %q, want %q", got, want)
	}
}
