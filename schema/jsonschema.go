package schema

import (
	"embed"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strings"
	"sync"
)

// The spec's own source is embedded so that JSONSchema describes each field
// with its Go doc comment: one text serves godoc, editors and --help, and it
// cannot drift.
//
//go:embed spec.go values.go retention.go schedule.go
var sources embed.FS

// JSONSchemaURL is the draft JSONSchema follows. yaml-language-server reads
// draft-07 and older, so that is what it writes.
const JSONSchemaURL = "http://json-schema.org/draft-07/schema#"

// JSONSchema returns a JSON Schema (draft-07) of fleet.yaml, ready for
// encoding/json. Unknown fields are rejected (additionalProperties: false) and
// descriptions come from the Go doc comments of the spec types.
func JSONSchema() map[string]any {
	docs := sourceDocs()
	defs := map[string]any{}
	root := schemaOf(reflect.TypeFor[Spec](), docs, defs)
	out := map[string]any{
		"$schema":     JSONSchemaURL,
		"$id":         "https://github.com/fleetctl/fleetctl/fleet.schema.json",
		"title":       "fleet.yaml",
		"description": docs["Spec"],
		"definitions": defs,
	}
	for k, v := range root {
		out[k] = v
	}
	return out
}

var jsonSchemaType = reflect.TypeFor[jsonSchemaer]()

// schemaOf describes t; structs other than Spec go into defs and are referred to.
func schemaOf(t reflect.Type, docs map[string]string, defs map[string]any) map[string]any {
	if t.Implements(jsonSchemaType) {
		m := reflect.Zero(t).Interface().(jsonSchemaer).jsonSchema()
		if d := docs[t.Name()]; d != "" {
			m["description"] = d
		}
		return m
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), docs, defs)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), docs, defs)}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for _, f := range reflect.VisibleFields(t) {
			if !f.IsExported() {
				continue
			}
			name := yamlName(f)
			p := schemaOf(f.Type, docs, defs)
			if d := docs[t.Name()+"."+f.Name]; d != "" {
				// Copy: p may be a shared definition reference.
				p = withDescription(p, d)
			}
			props[name] = p
			if f.Tag.Get("schema") == "required" {
				required = append(required, name)
			}
		}
		obj := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			obj["required"] = required
		}
		if t == reflect.TypeFor[Spec]() {
			return obj
		}
		if _, done := defs[t.Name()]; !done {
			defs[t.Name()] = nil // placeholder against recursion
			obj["description"] = docs[t.Name()]
			defs[t.Name()] = obj
		}
		return map[string]any{"$ref": "#/definitions/" + t.Name()}
	}
	panic("schema: no JSON Schema for " + t.String())
}

func withDescription(m map[string]any, d string) map[string]any {
	if _, ref := m["$ref"]; ref {
		// draft-07 ignores siblings of $ref; wrap it.
		return map[string]any{"description": d, "allOf": []any{m}}
	}
	c := make(map[string]any, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	c["description"] = d
	return c
}

var (
	docsOnce sync.Once
	docs     map[string]string
)

// sourceDocs maps "Type" and "Type.Field" to their doc comments, one paragraph
// joined into one line.
func sourceDocs() map[string]string {
	docsOnce.Do(func() {
		docs = map[string]string{}
		fset := token.NewFileSet()
		entries, _ := sources.ReadDir(".")
		for _, e := range entries {
			src, err := sources.ReadFile(e.Name())
			if err != nil {
				panic(err)
			}
			f, err := parser.ParseFile(fset, e.Name(), src, parser.ParseComments)
			if err != nil {
				panic("schema: embedded source does not parse: " + err.Error())
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.TYPE {
					continue
				}
				for _, spec := range gd.Specs {
					ts := spec.(*ast.TypeSpec)
					doc := ts.Doc
					if doc == nil && len(gd.Specs) == 1 {
						doc = gd.Doc
					}
					docs[ts.Name.Name] = oneLine(doc)
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, fld := range st.Fields.List {
						for _, n := range fld.Names {
							docs[ts.Name.Name+"."+n.Name] = oneLine(fld.Doc)
						}
					}
				}
			}
		}
	})
	return docs
}

func oneLine(g *ast.CommentGroup) string {
	if g == nil {
		return ""
	}
	return strings.Join(strings.Fields(g.Text()), " ")
}
