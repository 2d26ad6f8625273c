package c2_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/store"
)

const storePkg = "github.com/e4-iot/e4kit/c2/store"

// TestServiceAPIHasNoStoreTypes fails when an exported Service method takes
// or returns a c2/store type, directly or inside a c2 struct, slice, map,
// pointer or function, so that callers outside c2 need c2/store only to
// open a store.
func TestServiceAPIHasNoStoreTypes(t *testing.T) {
	svc := reflect.TypeOf(&c2.Service{})
	var leaks []string
	for i := range svc.NumMethod() {
		m := svc.Method(i)
		var types []reflect.Type
		for j := 1; j < m.Type.NumIn(); j++ { // In(0) is the receiver
			types = append(types, m.Type.In(j))
		}
		for j := range m.Type.NumOut() {
			types = append(types, m.Type.Out(j))
		}
		seen := map[reflect.Type]bool{}
		for _, typ := range types {
			if path := storeTypeIn(typ, seen); path != "" {
				leaks = append(leaks, m.Name+": "+path)
			}
		}
	}
	sort.Strings(leaks)
	if len(leaks) > 0 {
		t.Errorf("exported c2.Service methods expose c2/store types:\n%s", strings.Join(leaks, "\n"))
	}
}

// storeTypeIn returns a description of the first c2/store type reachable
// from typ, or "" if there is none.
func storeTypeIn(typ reflect.Type, seen map[reflect.Type]bool) string {
	if seen[typ] {
		return ""
	}
	seen[typ] = true
	if typ.PkgPath() == storePkg {
		return typ.String()
	}
	var inner []reflect.Type
	switch typ.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
		inner = append(inner, typ.Elem())
	case reflect.Map:
		inner = append(inner, typ.Key(), typ.Elem())
	case reflect.Func:
		for i := range typ.NumIn() {
			inner = append(inner, typ.In(i))
		}
		for i := range typ.NumOut() {
			inner = append(inner, typ.Out(i))
		}
	case reflect.Struct:
		if typ.PkgPath() != "" && !strings.HasPrefix(typ.PkgPath(), "github.com/e4-iot/e4kit/c2") {
			return "" // another package's struct (time.Time...): not c2's API
		}
		for i := range typ.NumField() {
			if f := typ.Field(i); f.IsExported() {
				if path := storeTypeIn(f.Type, seen); path != "" {
					return typ.String() + "." + f.Name + ": " + path
				}
			}
		}
	}
	for _, in := range inner {
		if path := storeTypeIn(in, seen); path != "" {
			return path
		}
	}
	return ""
}

// TestStoreTypeInFindsNestedStoreTypes checks the detector itself: a
// store type inside a c2 struct field, a slice and a map is found.
func TestStoreTypeInFindsNestedStoreTypes(t *testing.T) {
	type wrapper struct {
		Field map[string][]*struct{ Tx store.Policy }
	}
	if got := storeTypeIn(reflect.TypeOf(wrapper{}), map[reflect.Type]bool{}); !strings.Contains(got, "store.Policy") {
		t.Errorf("storeTypeIn(wrapper) = %q, want a path to store.Policy", got)
	}
	if got := storeTypeIn(reflect.TypeOf(c2.CommandFilter{}), map[reflect.Type]bool{}); got != "" {
		t.Errorf("storeTypeIn(c2.CommandFilter) = %q, want none", got)
	}
}

// TestCommandIDStringRoundTrips checks that CommandID.String gives the form
// ParseCommandID reads and the API shows (CommandStatus.ID).
func TestCommandIDStringRoundTrips(t *testing.T) {
	const hexID = "00112233445566778899aabbccddeeff"
	id, err := c2.ParseCommandID(hexID)
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != hexID {
		t.Errorf("String() = %q, want %q", id.String(), hexID)
	}
}

// TestPackageAPIHasNoStoreTransactions fails when an exported declaration
// of package c2 (a function, a type, or a method of an exported type)
// mentions a store transaction (store.Tx, store.AccessTx, ...): a caller of
// the service never holds one. Reflection cannot list a package's
// functions and types, so this reads the source. The transaction hook of
// the API layer is c2/internal/txhook for that reason.
func TestPackageAPIHasNoStoreTransactions(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) < 10 {
		t.Fatalf("found %d source files of package c2, want all of them", len(files))
	}
	var leaks []string
	for _, decl := range declarations(files) {
		ast.Inspect(decl.node, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "store" && strings.HasSuffix(sel.Sel.Name, "Tx") {
					leaks = append(leaks, fset.Position(sel.Pos()).String()+": "+decl.name+" mentions store."+sel.Sel.Name)
				}
			}
			return true
		})
	}
	if len(leaks) > 0 {
		t.Errorf("exported declarations of package c2 with store transactions:\n%s", strings.Join(leaks, "\n"))
	}
}

// exported is one exported declaration of a package and its syntax: a
// function's signature (not its body), a type's definition.
type exported struct {
	name string
	node ast.Node
}

// declarations returns the exported functions, types and methods of
// exported types in files.
func declarations(files []*ast.File) []exported {
	var out []exported
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Name.IsExported() && (d.Recv == nil || receiverExported(d.Recv)) {
					out = append(out, exported{d.Name.Name, d.Type})
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok && ts.Name.IsExported() {
						out = append(out, exported{ts.Name.Name, ts.Type})
					}
				}
			}
		}
	}
	return out
}

// receiverExported reports whether a method's receiver type is exported.
func receiverExported(recv *ast.FieldList) bool {
	typ := recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	if idx, ok := typ.(*ast.IndexExpr); ok {
		typ = idx.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}
