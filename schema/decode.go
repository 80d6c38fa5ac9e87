package schema

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest spec file Parse reads. Real fleets are a few
// kilobytes; the limit keeps a mistaken file from eating the agent's memory.
const MaxFileSize = 4 << 20

// maxNodes bounds the YAML nodes walked, aliases included, so that an
// "billion laughs" document of nested aliases cannot run away.
const maxNodes = 200_000

// Parse decodes a spec strictly, applies the defaults and validates it. file
// names the source in error messages. When anything is wrong the error is
// Errors, listing every problem found, in file order; the returned spec is
// then only fit for showing what was understood.
func Parse(file string, data []byte) (*Spec, error) {
	// About one position per 16 bytes of a spec of shares: sized up front,
	// the map is not grown again and again (a tenth of parsing 1,000 shares).
	s := &Spec{file: file, pos: make(map[string]Pos, len(data)/16)}
	d := &decoder{file: file, pos: s.pos, failed: map[string]bool{}}
	if !d.document(data, s) || d.nodes >= maxNodes {
		// The file is not a YAML mapping, or expands to too many values to
		// walk: more messages would only be noise.
		d.errs.sort()
		return s, d.errs
	}
	s.ApplyDefaults()
	errs := append(d.errs, s.validate(d.failed)...)
	if len(errs) > 0 {
		errs.sort()
		return s, errs
	}
	return s, nil
}

// decoder walks a yaml.Node tree into the spec types by reflection, recording
// where each field path was written and every problem, and going on after one.
type decoder struct {
	file   string
	pos    map[string]Pos
	failed map[string]bool // paths whose value could not be decoded
	errs   Errors
	nodes  int
}

func (d *decoder) errorAt(line, col int, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Path: path, Message: fmt.Sprintf(format, args...)})
	if path != "" {
		d.failed[path] = true
	}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errorAt(n.Line, n.Column, path, format, args...)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// document decodes data into s and reports whether it found a top-level
// mapping to decode.
func (d *decoder) document(data []byte, s *Spec) bool {
	if len(data) > MaxFileSize {
		d.errorAt(0, 0, "", "the file is %d bytes; a fleet spec may be at most %d (4 MiB)", len(data), MaxFileSize)
		return false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && len(doc.Content) == 0) {
		d.errorAt(1, 1, "", "the file is empty; a fleet spec needs at least version: 1 and appliances:")
		return false
	}
	if err != nil {
		d.syntaxError(data, err)
		return false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(data, err)
		return false
	default:
		d.errorAt(extra.Line, extra.Column, "", "a second YAML document (after ---); a fleet spec is one document")
		return false
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "the top level must be a mapping with version:, appliances: and shares:, not %s", kindName(root))
		return false
	}
	d.decode(root, reflect.ValueOf(s).Elem(), "")
	return true
}

// syntaxError turns a YAML parser error into a positioned one. A tab in the
// indentation gets its own message: the parser's is cryptic.
func (d *decoder) syntaxError(data []byte, err error) {
	line, msg := 0, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	// The parser reports a tab that breaks the indentation at the start of
	// the scalar before it, so for that message look at the lines after too.
	tabErr := strings.Contains(msg, "tab character")
	for i, l := range bytes.Split(data, []byte("\n")) {
		if line > 0 && i+1 > line && !tabErr {
			break
		}
		indent := len(l) - len(bytes.TrimLeft(l, " \t"))
		if t := bytes.IndexByte(l[:indent], '\t'); t >= 0 {
			d.errorAt(i+1, t+1, "", "tab character in the indentation; YAML indents with spaces only")
			return
		}
	}
	if line == 0 {
		line = 1
	}
	d.errorAt(line, 0, "", "not valid YAML: %s", msg)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "something else"
}

func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 {
			d.errorf(n, path, "aliases nest too deeply")
			return nil
		}
		n = n.Alias
	}
	d.nodes++
	if d.nodes == maxNodes {
		d.errorf(n, path, "the document expands to more than %d values (aliases?); simplify it", maxNodes)
	}
	if d.nodes >= maxNodes {
		return nil
	}
	return n
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// decode stores node n into v, recording n's position under path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n = d.resolve(n, path); n == nil {
		return
	}
	d.pos[path] = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // as if left out
	}
	if v.Kind() != reflect.Pointer && reflect.PointerTo(v.Type()).Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a string, found %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.errorf(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list (lines starting with -), found %s", kindName(n))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content)))
		for i, item := range n.Content {
			d.decode(item, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a string, found %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		i, err := strconv.ParseInt(n.Value, 0, 32)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.errorf(n, path, "want a whole number, found %s", kindName(n))
			return
		}
		v.SetInt(i)
	default:
		panic("schema: cannot decode into " + v.Type().String())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping (key: value lines), found %s", kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be plain words, found %s", kindName(k))
			continue
		}
		fpath := joinPath(path, k.Value)
		if k.Tag == "!!merge" {
			d.errorf(k, path, "merge keys (<<) are not supported; write the fields out")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.errorf(k, fpath, "set twice (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			d.errorf(k, fpath, "unknown field %s", suggest(k.Value, v.Type()))
			continue
		}
		d.decode(val, v.FieldByIndex(f), fpath)
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldCache holds yamlFields' answer per struct type: a spec with a
// thousand shares would otherwise walk the Share type a thousand times.
var fieldCache sync.Map // reflect.Type -> map[string][]int

// yamlFields maps the YAML names of a struct's exported fields to the fields.
// The map is shared; callers must not modify it.
func yamlFields(t reflect.Type) map[string][]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string][]int)
	}
	m := map[string][]int{}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() {
			continue
		}
		m[yamlName(f)] = f.Index
	}
	fieldCache.Store(t, m)
	return m
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

// suggest quotes an unknown key and names the field it probably meant, or the
// fields there are.
func suggest(key string, t reflect.Type) string {
	var names []string
	best, bestDist := "", 3
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() {
			continue
		}
		n := yamlName(f)
		names = append(names, n)
		if dist := editDistance(strings.ToLower(key), n); dist < bestDist {
			best, bestDist = n, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("%q (did you mean %q?)", key, best)
	}
	return fmt.Sprintf("%q; known fields here: %s", key, strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
