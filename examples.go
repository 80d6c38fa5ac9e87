// Package fleetctl holds the files of this repository that the fleetctl
// binary carries with it. A go:embed pattern cannot reach above its
// package's directory, and fleet.yaml.example belongs at the root where
// people look for it; so the root holds this small package, and
// cmd/fleetctl imports it.
package fleetctl

import (
	"bytes"
	_ "embed"
)

// ExampleFleetName is the name of the example fleet's file at the root of
// the repository.
const ExampleFleetName = "fleet.yaml.example"

//go:embed fleet.yaml.example
var exampleFleet []byte

// ExampleFleet returns fleet.yaml.example as it was when the binary was
// built: the commented small-site fleet (two storage appliances and a
// witness) that 'fleetctl demo' runs when given no file.
func ExampleFleet() []byte { return bytes.Clone(exampleFleet) }
