package schema_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/fleetctl/fleetctl/schema"
)

// schemaDoc is JSONSchema() as an editor sees it: encoded to JSON and read
// back as plain JSON values.
func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	b, err := json.Marshal(schema.JSONSchema())
	if err != nil {
		t.Fatalf("marshal JSONSchema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("read back JSONSchema: %v", err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("JSONSchema is a %T, want an object", doc)
	}
	return m
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	if err := c.AddResource("fleet.schema.json", schemaDoc(t)); err != nil {
		t.Fatalf("add schema: %v", err)
	}
	sch, err := c.Compile("fleet.schema.json")
	if err != nil {
		t.Fatalf("compile JSONSchema as draft-07: %v", err)
	}
	return sch
}

// yamlToJSON converts a YAML document to the JSON value it stands for.
func yamlToJSON(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatalf("YAML: %v", err)
	}
	b, err := json.Marshal(stringKeys(t, v))
	if err != nil {
		t.Fatalf("YAML to JSON: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("read JSON: %v", err)
	}
	return inst
}

// stringKeys turns YAML mappings into JSON objects, whatever their key type.
func stringKeys(t *testing.T, v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = stringKeys(t, x)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = stringKeys(t, x)
		}
		return m
	case []any:
		for i, x := range v {
			v[i] = stringKeys(t, x)
		}
		return v
	}
	return v
}

func TestJSONSchemaIsDraft07(t *testing.T) {
	doc := schemaDoc(t)
	const draft07 = "http://json-schema.org/draft-07/schema#"
	if doc["$schema"] != draft07 {
		t.Fatalf("$schema is %v, want %s", doc["$schema"], draft07)
	}
	if schema.JSONSchemaURL != draft07 {
		t.Fatalf("JSONSchemaURL is %s, want %s", schema.JSONSchemaURL, draft07)
	}
	if sch := compileSchema(t); sch.DraftVersion != 7 {
		t.Fatalf("compiled as draft %d, want 7", sch.DraftVersion)
	}
}

func TestJSONSchemaAcceptsExamples(t *testing.T) {
	sch := compileSchema(t)
	for _, file := range acceptedFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := sch.Validate(yamlToJSON(t, data)); err != nil {
				t.Fatalf("the schema rejects %s, which Parse accepts:\n%v", file, err)
			}
		})
	}
}

func TestJSONSchemaRejects(t *testing.T) {
	const valid = `version: 1
appliances:
  - name: nas1
    address: nas1:7400
    role: %s
    pools: [{name: tank, path: /mnt/tank}]
  - name: nas2
    address: nas2:7400
    pools: [{name: tank, path: /mnt/tank}]%s
shares:
  - name: data
    appliance: nas1
    pool: tank
    quota: 200GiB
    replication:
      to: nas2/tank
      schedule: every 10m
      retention: 7d%s
%s`
	spec := func(role, inAppliance, inReplication, atTop string) []byte {
		return []byte(fmt.Sprintf(valid, role, inAppliance, inReplication, atTop))
	}
	sch := compileSchema(t)

	// The control: the spec the cases break is valid, to Parse and the schema.
	ok := spec("storage", "", "", "")
	mustParse(t, "fleet.yaml", ok)
	if err := sch.Validate(yamlToJSON(t, ok)); err != nil {
		t.Fatalf("the schema rejects a valid spec:\n%v", err)
	}

	tests := []struct {
		name string
		src  []byte
	}{
		{"unknown field at the top level", spec("storage", "", "", "colour: blue\n")},
		{"unknown field in an appliance", spec("storage", "\n    colour: blue", "", "")},
		{"unknown field in a share's replication", spec("storage", "", "\n      compress: zstd", "")},
		{"role not in the enum", spec("boss", "", "", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := schema.Parse("fleet.yaml", tt.src); err == nil {
				t.Fatalf("Parse accepts the broken spec; the case tests nothing")
			}
			if err := sch.Validate(yamlToJSON(t, tt.src)); err == nil {
				t.Fatalf("the schema accepts:\n%s", tt.src)
			}
		})
	}
}

// lookup follows keys through the schema document, resolving a
// "#/definitions/X" reference (bare or wrapped in allOf) on the way.
func lookup(t *testing.T, doc map[string]any, keys ...string) map[string]any {
	t.Helper()
	cur := doc
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("schema has no object at %s (stuck at %q in %v)", strings.Join(keys, "."), k, cur)
		}
		cur = deref(t, doc, next)
	}
	return cur
}

func deref(t *testing.T, doc, m map[string]any) map[string]any {
	t.Helper()
	if all, ok := m["allOf"].([]any); ok && len(all) == 1 {
		m = all[0].(map[string]any)
	}
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	name, ok := strings.CutPrefix(ref, "#/definitions/")
	if !ok {
		t.Fatalf("unexpected $ref %q", ref)
	}
	def, ok := doc["definitions"].(map[string]any)[name].(map[string]any)
	if !ok {
		t.Fatalf("$ref %q names no definition", ref)
	}
	return def
}

func TestJSONSchemaDescriptions(t *testing.T) {
	doc := schemaDoc(t)
	quota := lookup(t, doc, "properties", "shares", "items", "properties", "quota")
	if d, _ := quota["description"].(string); !strings.Contains(d, "200GiB") {
		t.Errorf("shares[].quota description is %q, want the doc comment mentioning 200GiB", d)
	}
	if d, _ := doc["description"].(string); !strings.HasPrefix(d, "Spec is the whole desired state") {
		t.Errorf("top-level description is %q, want Spec's doc comment", d)
	}
	// Every field, at the top and in every definition, has its doc comment.
	objects := map[string]map[string]any{"(top level)": doc}
	for name, def := range doc["definitions"].(map[string]any) {
		objects[name] = def.(map[string]any)
	}
	for name, obj := range objects {
		props, _ := obj["properties"].(map[string]any)
		if len(props) == 0 {
			t.Errorf("%s has no properties", name)
		}
		for field, p := range props {
			if d, _ := p.(map[string]any)["description"].(string); d == "" {
				t.Errorf("%s.%s has no description", name, field)
			}
		}
	}
}
