package schema

import (
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Op says what a Change does to an object of the spec.
type Op string

// The operations of a Change, as terraform plan writes them.
const (
	OpAdd    Op = "+" // the object is new in the file
	OpChange Op = "~" // the object is in both specs with different fields
	OpRemove Op = "-" // the object is gone from the file
)

// The kinds of object a Change is about.
const (
	KindFleet     = "fleet"     // the spec's own fields: version and fleet
	KindWitness   = "witness"   // the witness policy
	KindAppliance = "appliance" // an appliance, named by its name
	KindPool      = "pool"      // a pool, named appliance/pool
	KindShare     = "share"     // a share, named by its name
)

// Change is one difference between two specs: an object added, changed or
// removed.
type Change struct {
	// Op is "+" (add), "~" (change) or "-" (remove).
	Op Op `json:"op"`
	// Kind is what the object is: fleet, witness, appliance, pool or share.
	Kind string `json:"kind"`
	// Name names the object: "nas1" for an appliance, "nas1/tank" for a
	// pool, "projects" for a share, empty for the witness and the fleet.
	Name string `json:"name"`
	// Note says what the change does beyond the file, when that is not
	// obvious: what happens to the data of a removed object.
	Note string `json:"note,omitempty"`
	// Fields are the fields that differ for "~", and the fields that have a
	// value for "+" (New) and "-" (Old), by YAML path relative to the object
	// (quota, replication.schedule). Pools are Changes of their own, not
	// fields of their appliance.
	Fields []FieldChange `json:"fields,omitempty"`
}

// FieldChange is one field of a Change, with its values rendered as the file
// writes them (200GiB, 1m, nas2/tank).
type FieldChange struct {
	// Path is the field's YAML path relative to its object, nested blocks
	// dotted: quota, snapshots.retention.
	Path string `json:"path"`
	// Old is the stored value, empty when the field had none.
	Old string `json:"old,omitempty"`
	// New is the file's value, empty when the field has none.
	New string `json:"new,omitempty"`
	// Note warns about what the change does, like deleting a share.
	Note string `json:"note,omitempty"`
}

// Changes is the difference between two specs, in the order Diff gives.
type Changes []Change

// Diff compares the stored spec old (nil when none is stored yet) with new,
// the file; both have their defaults applied, and new must not be nil.
//
// Objects are matched by name, never by position, so reordering the file
// changes nothing, and fields are compared as the file writes them, so
// 214748364800B equals 200GiB. The order is stable: the fleet, the witness,
// the appliances in new's order each followed by its pools, the appliances
// only old has, then the shares in new's order and the shares only old has.
// A nil old makes everything an addition.
func Diff(old, new *Spec) Changes {
	return DiffWith(old, new, DiffOptions{})
}

// DiffOptions is what Diff may be told beyond the two specs.
type DiffOptions struct {
	// Active names, by share, the appliance that holds the share's
	// writable copy now, as the fleet's failover state says (after a
	// failover or switchover, the replica's appliance). The note on a share
	// made absent names it, since that is where the share is deleted. A
	// share missing here is active on its spec appliance.
	Active map[string]string
}

// DiffNeedsActive reports whether a diff against new depends on
// DiffOptions.Active: new makes a replicated share absent, and the note on
// it names where it is deleted. Otherwise DiffWith is Diff whatever
// Active holds.
func DiffNeedsActive(new *Spec) bool {
	for i := range new.Shares {
		if sh := &new.Shares[i]; sh.State == StateAbsent && sh.Replication != nil {
			return true
		}
	}
	return false
}

// DiffWith is Diff, told what DiffOptions holds. It stays pure: the caller
// reads the failover state.
func DiffWith(old, new *Spec, opt DiffOptions) Changes {
	cs := Changes{}
	add := func(c Change, ok bool) {
		if ok {
			cs = append(cs, c)
		}
	}
	var oldSpec *Spec
	var oldWitness *Witness
	if old != nil {
		oldSpec, oldWitness = old, &old.Witness
	}
	add(compare(KindFleet, "", oldSpec, new, "witness", "appliances", "shares"))
	add(compare(KindWitness, "", oldWitness, &new.Witness))

	oldAppliance := func(name string) *Appliance {
		if old == nil {
			return nil
		}
		return old.Appliance(name)
	}
	for i := range new.Appliances {
		a := &new.Appliances[i]
		oa := oldAppliance(a.Name)
		add(compare(KindAppliance, a.Name, oa, a, "name", "pools"))
		cs = append(cs, diffPools(oa, a)...)
	}
	if old != nil {
		for i := range old.Appliances {
			oa := &old.Appliances[i]
			if new.Appliance(oa.Name) == nil {
				c, _ := compare(KindAppliance, oa.Name, oa, nil, "name", "pools")
				c.Note = "leaves the fleet, nothing on it is deleted"
				cs = append(cs, c)
				cs = append(cs, diffPools(oa, nil)...)
			}
		}
	}

	// Shares by name: Spec.Share looks through the list, and a fleet may
	// have thousands.
	oldShares, newShares := sharesByName(old), sharesByName(new)
	for i := range new.Shares {
		s := &new.Shares[i]
		c, ok := compare(KindShare, s.Name, oldShares[s.Name], s, "name")
		for j, f := range c.Fields {
			if f.deletes() {
				c.Fields[j].Note = deleteNote(s, opt.Active[s.Name], c.Op == OpAdd)
			}
		}
		add(c, ok)
	}
	if old != nil {
		for i := range old.Shares {
			gone := &old.Shares[i]
			if newShares[gone.Name] == nil {
				c, _ := compare(KindShare, gone.Name, gone, nil, "name")
				c.Note = "removed from the spec: kept on disk, reported as orphaned"
				if gone.State == StateAbsent {
					c.Note = "removed from the spec: no longer deleted, reported as orphaned if still on disk"
				}
				cs = append(cs, c)
			}
		}
	}
	return cs
}

// sharesByName maps the names of spec's shares to them; nil for a nil spec.
// A name given twice (an invalid spec) maps to its first share, as
// Spec.Share finds it.
func sharesByName(spec *Spec) map[string]*Share {
	if spec == nil {
		return nil
	}
	m := make(map[string]*Share, len(spec.Shares))
	for i := range spec.Shares {
		if _, ok := m[spec.Shares[i].Name]; !ok {
			m[spec.Shares[i].Name] = &spec.Shares[i]
		}
	}
	return m
}

// deleteNote says where a share made absent is deleted: on active, the
// appliance that holds its writable copy now ("" for the spec's), after a
// final snapshot; the other appliance of a replicated share keeps its
// copies.
func deleteNote(s *Share, active string, added bool) string {
	other := ""
	if s.Replication != nil {
		other = s.Replication.To.Appliance
	}
	var parts []string
	if active == "" || active == s.Appliance {
		parts = append(parts, "the share will be DELETED on "+s.Appliance)
	} else {
		parts = append(parts, "the share will be DELETED on "+active, "where it is active now")
		other = s.Appliance
	}
	if added {
		parts[len(parts)-1] += " if it exists"
	}
	note := strings.Join(parts, ", ")
	if added || len(parts) > 1 {
		note += ","
	}
	note += " after a final snapshot"
	if other != "" {
		note += "; " + other + " keeps its copies"
	}
	return note
}

// diffPools compares the pools of an appliance; old or new is nil when the
// whole appliance is added or removed.
func diffPools(old, new *Appliance) []Change {
	var cs []Change
	name := func(a *Appliance, p *Pool) string { return a.Name + "/" + p.Name }
	if new != nil {
		for i := range new.Pools {
			p := &new.Pools[i]
			var op *Pool
			if old != nil {
				op = old.Pool(p.Name)
			}
			if c, ok := compare(KindPool, name(new, p), op, p, "name"); ok {
				cs = append(cs, c)
			}
		}
	}
	if old != nil {
		for i := range old.Pools {
			op := &old.Pools[i]
			if new == nil || new.Pool(op.Name) == nil {
				c, _ := compare(KindPool, name(old, op), op, nil, "name")
				c.Note = "no longer managed, nothing on it is deleted"
				cs = append(cs, c)
			}
		}
	}
	return cs
}

// compare diffs one object by its fields, leaving out the fields named in
// skip (its name, and the objects it holds that are diffed on their own). It
// reports false when both are nil or their fields are all equal.
func compare[T any](kind, name string, old, new *T, skip ...string) (Change, bool) {
	c := Change{Kind: kind, Name: name}
	switch {
	case old == nil && new == nil:
		return c, false
	case old == nil:
		c.Op = OpAdd
		for _, f := range flatten(reflect.ValueOf(new).Elem(), "", skip) {
			if f.value != "" {
				c.Fields = append(c.Fields, FieldChange{Path: f.path, New: f.value})
			}
		}
		return c, true
	case new == nil:
		c.Op = OpRemove
		for _, f := range flatten(reflect.ValueOf(old).Elem(), "", skip) {
			if f.value != "" {
				c.Fields = append(c.Fields, FieldChange{Path: f.path, Old: f.value})
			}
		}
		return c, true
	}
	c.Op = OpChange
	of := flatten(reflect.ValueOf(old).Elem(), "", skip)
	nf := flatten(reflect.ValueOf(new).Elem(), "", skip)
	for i := range nf { // same type, so the same paths in the same order
		if of[i].value != nf[i].value {
			c.Fields = append(c.Fields, FieldChange{Path: nf[i].path, Old: of[i].value, New: nf[i].value})
		}
	}
	return c, len(c.Fields) > 0
}

// renderedField is a field's YAML path and its value as the file writes it,
// empty when it has none.
type renderedField struct {
	path, value string
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// flatten renders the exported fields of struct v by their YAML names, nested
// blocks as dotted paths. A nil block renders its fields empty, so a block
// added or removed shows as its fields added or removed. It panics on a field
// kind it cannot render, so that a new kind of field in the spec fails the
// tests instead of silently dropping out of diffs.
//
// Which fields a type has, and their paths, are worked out once per type
// (flatFields): a diff of 1,000 shares flattens 2,000 of them.
func flatten(v reflect.Value, prefix string, skip []string) []renderedField {
	fields := flatFields(v.Type(), prefix, skip)
	out := make([]renderedField, len(fields))
	for i, f := range fields {
		fv := v
		for _, index := range f.levels {
			fv = fv.FieldByIndex(index)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					fv = reflect.Zero(fv.Type().Elem())
				} else {
					fv = fv.Elem()
				}
			}
		}
		out[i] = renderedField{f.path, render(fv, f.path, f.text)}
	}
	return out
}

// flatField is one field flatten renders: its path and how to reach it, the
// field index at each level of nested blocks, outermost first (a pointer
// is followed, or taken as zero when nil, after each level).
type flatField struct {
	path   string
	levels [][]int
	text   bool // the field's type is an encoding.TextMarshaler
}

// flatKey names one list of flatFields: the type, the prefix and the
// top-level fields left out.
type flatKey struct {
	t            reflect.Type
	prefix, skip string
}

// flatCache holds flatFields' answers, by flatKey.
var flatCache sync.Map

// flatFields lists the fields flatten renders for struct type t, in order.
func flatFields(t reflect.Type, prefix string, skip []string) []flatField {
	key := flatKey{t, prefix, strings.Join(skip, "\x00")}
	if fs, ok := flatCache.Load(key); ok {
		return fs.([]flatField)
	}
	fs := appendFlatFields(nil, t, prefix, skip, nil)
	flatCache.Store(key, fs)
	return fs
}

func appendFlatFields(out []flatField, t reflect.Type, prefix string, skip []string, outer [][]int) []flatField {
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || (prefix == "" && contains(skip, yamlName(sf))) {
			continue
		}
		path := prefix + yamlName(sf)
		levels := append(slices.Clip(outer), sf.Index)
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !ft.Implements(textMarshaler) {
			out = appendFlatFields(out, ft, path+".", nil, levels)
			continue
		}
		out = append(out, flatField{path, levels, ft.Implements(textMarshaler)})
	}
	return out
}

// render writes one scalar as the file writes it; the zero value, which the
// file writes by leaving the field out, renders empty. text says that v's
// type is an encoding.TextMarshaler.
func render(v reflect.Value, path string, text bool) string {
	if v.IsZero() {
		return ""
	}
	if text {
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return string(b)
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	}
	panic("schema: Diff cannot render field " + path + " of type " + v.Type().String())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deletes reports whether the field change makes a share absent that was not.
func (f FieldChange) deletes() bool {
	return f.Path == "state" && f.New == string(StateAbsent) && f.Old != string(StateAbsent)
}

// Summary counts the changes by operation, as the summary line does.
func (c Changes) Summary() (add, change, remove int) {
	for _, ch := range c {
		switch ch.Op {
		case OpAdd:
			add++
		case OpChange:
			change++
		case OpRemove:
			remove++
		}
	}
	return add, change, remove
}

// MarshalJSON writes the changes as a JSON array, [] when there are none, so
// that scripts never meet null.
func (c Changes) MarshalJSON() ([]byte, error) {
	if c == nil {
		c = Changes{}
	}
	return json.Marshal([]Change(c))
}

// ANSI colours, as terraform plan uses them.
const (
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiReset  = "\x1b[0m"
)

// Render writes the changes for people, like terraform plan. Each change is
// one line, "  OP KIND NAME", with what identifies a new or removed object
// after it, then its fields one a line, indented six spaces and aligned:
//
//	  ~ witness
//	      failover_after: 30s → 1m
//	  + appliance nas3 (nas3.example:7400, storage)
//	  + pool nas3/tank (/mnt/tank)
//	  ~ share projects
//	      quota: 100GiB → 200GiB
//	  + share scratch on nas2/tank
//	      quota: 50GiB
//	  ~ share old-data
//	      state: present → absent (the share will be DELETED on nas1 after a final snapshot)
//	  - share old on nas1/tank (removed from the spec: kept on disk, reported as orphaned)
//
//	Spec: 3 to add, 3 to change, 1 to remove; 1 share will be DELETED: old-data.
//
// A changed field reads "path: old → new", "(none)" standing for no value; a
// new object lists the fields its line does not show, leaving out state:
// present and failover: off, which every plain share has; a removed object
// lists none, and its line says what happens to its data. A Note follows its
// line in parentheses. The summary line names the shares that become absent.
// When nothing differs Render writes the one line "No changes. The stored
// spec matches the file."
//
// color adds ANSI colours: green +, yellow ~, red - and red for the lines
// that delete a share.
func (c Changes) Render(w io.Writer, color bool) error {
	if len(c) == 0 {
		_, err := io.WriteString(w, "No changes. The stored spec matches the file.\n")
		return err
	}
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	opColor := map[Op]string{OpAdd: ansiGreen, OpChange: ansiYellow, OpRemove: ansiRed}

	var b strings.Builder
	var deleted []string
	for _, ch := range c {
		fmt.Fprintf(&b, "  %s %s\n", paint(opColor[ch.Op], string(ch.Op)), ch.headline())
		lines := ch.listed()
		width := 0
		for _, f := range lines {
			width = max(width, len(f.Path)+1)
		}
		for _, f := range lines {
			line := fmt.Sprintf("%-*s %s", width, f.Path+":", f.value(ch.Op))
			if f.Note != "" {
				line += " (" + f.Note + ")"
			}
			if f.deletes() {
				line = paint(ansiRed, line)
				deleted = append(deleted, ch.Name)
			}
			b.WriteString("      " + line + "\n")
		}
	}
	add, change, remove := c.Summary()
	fmt.Fprintf(&b, "\nSpec: %d to add, %d to change, %d to remove", add, change, remove)
	switch len(deleted) {
	case 0:
		b.WriteString(".\n")
	case 1:
		b.WriteString("; " + paint(ansiRed, "1 share will be DELETED: "+deleted[0]+".") + "\n")
	default:
		b.WriteString("; " + paint(ansiRed, fmt.Sprintf("%d shares will be DELETED: %s.", len(deleted), strings.Join(deleted, ", "))) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// headerFields are the fields a new or removed object shows on its own line.
var headerFields = map[string][]string{
	KindAppliance: {"address", "role"},
	KindPool:      {"path"},
	KindShare:     {"appliance", "pool"},
}

// headline is a change's line after the operation: kind, name, and for a new
// or removed object what identifies it and its Note.
func (c Change) headline() string {
	s := c.Kind
	if c.Name != "" {
		s += " " + c.Name
	}
	if c.Op == OpChange {
		if c.Note != "" {
			s += " (" + c.Note + ")"
		}
		return s
	}
	var details []string
	for _, f := range c.Fields {
		if contains(headerFields[c.Kind], f.Path) {
			details = append(details, f.value(c.Op))
		}
	}
	if c.Kind == KindShare && len(details) > 0 {
		s += " on " + strings.Join(details, "/")
		details = nil
	}
	var parens []string
	if len(details) > 0 {
		parens = append(parens, strings.Join(details, ", "))
	}
	if c.Note != "" {
		parens = append(parens, c.Note)
	}
	if len(parens) > 0 {
		s += " (" + strings.Join(parens, "; ") + ")"
	}
	return s
}

// listed returns the fields Render lists under a change's line.
func (c Change) listed() []FieldChange {
	switch c.Op {
	case OpChange:
		return c.Fields
	case OpRemove:
		return nil
	}
	var out []FieldChange
	for _, f := range c.Fields {
		quiet := contains(headerFields[c.Kind], f.Path) ||
			c.Kind == KindShare && (f.Path == "state" && f.New == string(StatePresent) ||
				f.Path == "failover" && f.New == string(FailoverOff))
		if !quiet {
			out = append(out, f)
		}
	}
	return out
}

// value renders a field as Render writes it under a change with operation op.
func (f FieldChange) value(op Op) string {
	none := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	switch op {
	case OpAdd:
		return f.New
	case OpRemove:
		return f.Old
	}
	return none(f.Old) + " → " + none(f.New)
}
