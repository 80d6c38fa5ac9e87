package main

import (
	"encoding/json"

	"github.com/fleetctl/fleetctl/schema"
)

type schemaCmd struct{}

func (schemaCmd) Help() string {
	return `Prints the JSON Schema (draft-07) of fleet.yaml, with a description for
every field. Editors that use yaml-language-server (VS Code's YAML
extension, Neovim, Helix) then check and complete fleet.yaml as you type:

  fleetctl schema > fleet.schema.json

and put this first line in fleet.yaml:

  # yaml-language-server: $schema=fleet.schema.json

The schema checks shape only; fleetctl validate also checks references
between appliances, pools and shares, and the witness deadlines.`
}

func (schemaCmd) Run(e env) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(schema.JSONSchema())
}
