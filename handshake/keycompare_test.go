package handshake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// secretNames are the names of values that hold key material or a MAC: a
// comparison of one must run in constant time (crypto/subtle, hmac.Equal,
// PublicKey.Equal for what is not secret), never ==, != or bytes.Equal,
// whose time depends on where the first difference is.
var secretNames = map[string]bool{
	"PrivateKey": true, "PresharedKey": true, "SendKey": true, "RecvKey": true, "sendKey": true, "recvKey": true,
	"ResumptionSecret": true, "secret": true, "Secret": true, "psk": true, "PSK": true, "PSKTag": true, "pskTag": true,
	"Tag": true, "tag": true, "eph": true, "mac1": true, "mac2": true, "cookie": true, "pin": true, "PIN": true,
}

// secretName is the name an expression ends in (x.y.PresharedKey(),
// k[:], *p: PresharedKey, k, p), or "".
func secretName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.CallExpr:
		return secretName(x.Fun)
	case *ast.SliceExpr:
		return secretName(x.X)
	case *ast.IndexExpr:
		return secretName(x.X)
	case *ast.StarExpr:
		return secretName(x.X)
	case *ast.ParenExpr:
		return secretName(x.X)
	case *ast.UnaryExpr:
		return secretName(x.X)
	}
	return ""
}

// isConstant: nil, or a literal (pin[len(pin)-1] == '\n' looks at one
// byte's being a newline, not at a secret).
func isConstant(e ast.Expr) bool {
	if _, ok := e.(*ast.BasicLit); ok {
		return true
	}
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "nil"
}

// TestNoVariableTimeKeyComparisons: no code of the module compares key
// material with ==, != or bytes.Equal (nor reflect.DeepEqual). A reload
// compared each kept peer's pre-shared key with the new one by ==.
func TestNoVariableTimeKeyComparisons(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || strings.HasPrefix(n, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BinaryExpr:
				if (x.Op == token.EQL || x.Op == token.NEQ) && !isConstant(x.X) && !isConstant(x.Y) {
					for _, side := range []ast.Expr{x.X, x.Y} {
						if name := secretName(side); secretNames[name] {
							t.Errorf("%s: %s compared with %s: use crypto/subtle", fset.Position(x.Pos()), name, x.Op)
							break
						}
					}
				}
			case *ast.CallExpr:
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "bytes" && sel.Sel.Name == "Equal" || pkg.Name == "reflect" && sel.Sel.Name == "DeepEqual") {
						for _, arg := range x.Args {
							if name := secretName(arg); secretNames[name] {
								t.Errorf("%s: %s compared with %s.%s: use crypto/subtle", fset.Position(x.Pos()), name, pkg.Name, sel.Sel.Name)
								break
							}
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNoDeepEqualOnKeyTypes: the names above see reflect.DeepEqual(p, q)
// only when p or q is named as a key; conf.Peer.Equal compared two whole
// peers, pre-shared keys included, with it, and passed. This scan knows
// the arguments' types: reflect.DeepEqual on a value whose type holds a
// key field anywhere (a field named as in secretNames, through structs,
// arrays, slices, maps and pointers, all of which DeepEqual walks) is
// flagged, and so is == or != on a struct or array that holds one.
func TestNoDeepEqualOnKeyTypes(t *testing.T) {
	mod := listModule(t)
	for _, p := range mod.pkgs {
		if p.Module == nil || !p.Module.Main {
			continue
		}
		fset := token.NewFileSet()
		var files []*ast.File
		for _, name := range append(p.GoFiles, p.CgoFiles...) {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		for _, msg := range keyTypeComparisons(t, fset, mod, p.ImportPath, files) {
			t.Error(msg)
		}
	}
}

// The scan flags the old conf.Peer.Equal (a struct with a pre-shared key
// field, compared whole), and DeepEqual reaching a key through a slice of
// pointers; not a comparison of the key-free fields alone.
func TestKeyTypeScanFlagsWholeStructs(t *testing.T) {
	const src = `package fixture

import "reflect"

type PresharedKey [32]byte

type Peer struct {
	ID           string
	PresharedKey PresharedKey
	AllowedIPs   []string
}

type keyOnly struct{ Tag [32]byte }

func (p Peer) Equal(q Peer) bool { return reflect.DeepEqual(p, q) }

func samePeers(a, b []*Peer) bool { return reflect.DeepEqual(a, b) }

func sameTag(a, b keyOnly) bool { return a == b }

func sameIPs(p, q Peer) bool { return reflect.DeepEqual(p.AllowedIPs, q.AllowedIPs) && p.ID == q.ID }

func same(a, b *Peer) bool { return a == b }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "fixture.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := keyTypeComparisons(t, fset, listModule(t), "fixture", []*ast.File{f})
	want := []string{
		"fixture.go:15:43: reflect.DeepEqual on fixture.Peer, which holds the key field PresharedKey: compare keys with crypto/subtle",
		"fixture.go:17:44: reflect.DeepEqual on []*fixture.Peer, which holds the key field PresharedKey: compare keys with crypto/subtle",
		"fixture.go:19:42: == on fixture.keyOnly, which holds the key field Tag: compare keys with crypto/subtle",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("scan of the fixture:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// keyTypeComparisons type-checks one package's files (its imports from
// their export data) and lists its comparisons of values whose type holds
// a key field.
func keyTypeComparisons(t *testing.T, fset *token.FileSet, mod *module, path string, files []*ast.File) []string {
	t.Helper()
	var typeErrs []error
	conf := types.Config{
		Importer:    importer.ForCompiler(fset, "gc", mod.open),
		FakeImportC: true,
		Error:       func(err error) { typeErrs = append(typeErrs, err) },
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}}
	conf.Check(path, fset, files, info)
	if len(typeErrs) > 0 {
		t.Fatalf("type-checking %s: %v", path, errors.Join(typeErrs...))
	}
	var found []string
	flag := func(pos token.Pos, what string, e ast.Expr, followRefs bool) bool {
		typ := info.TypeOf(e)
		if typ == nil {
			return false
		}
		field := keyField(typ, followRefs, map[types.Type]bool{})
		if field == "" {
			return false
		}
		found = append(found, fmt.Sprintf("%s: %s on %s, which holds the key field %s: compare keys with crypto/subtle",
			fset.Position(pos), what, typ, field))
		return true
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				sel, ok := x.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				fn, ok := info.Uses[sel.Sel].(*types.Func)
				if !ok || fn.Pkg() == nil || fn.Pkg().Path() != "reflect" || fn.Name() != "DeepEqual" {
					return true
				}
				for _, arg := range x.Args {
					if flag(x.Pos(), "reflect.DeepEqual", arg, true) {
						break
					}
				}
			case *ast.BinaryExpr:
				if x.Op == token.EQL || x.Op == token.NEQ {
					// == compares pointers by address and walks no
					// reference: only a struct or array value's own bytes.
					_ = flag(x.Pos(), x.Op.String(), x.X, false) || flag(x.Pos(), x.Op.String(), x.Y, false)
				}
			}
			return true
		})
	}
	return found
}

// keyField names a key field that typ holds (a path, "Outer.Inner"), or is
// "". A type named as a key (PresharedKey) is one. followRefs: through
// pointers, slices and maps too, as reflect.DeepEqual goes.
func keyField(typ types.Type, followRefs bool, seen map[types.Type]bool) string {
	typ = types.Unalias(typ)
	if seen[typ] {
		return ""
	}
	seen[typ] = true
	if n, ok := typ.(*types.Named); ok && secretNames[n.Obj().Name()] {
		return n.Obj().Name()
	}
	switch u := typ.Underlying().(type) {
	case *types.Struct:
		for i := range u.NumFields() {
			f := u.Field(i)
			if secretNames[f.Name()] {
				return f.Name()
			}
			if sub := keyField(f.Type(), followRefs, seen); sub != "" {
				return f.Name() + "." + sub
			}
		}
	case *types.Array:
		return keyField(u.Elem(), followRefs, seen)
	case *types.Pointer:
		if followRefs {
			return keyField(u.Elem(), followRefs, seen)
		}
	case *types.Slice:
		if followRefs {
			return keyField(u.Elem(), followRefs, seen)
		}
	case *types.Map:
		if followRefs {
			if k := keyField(u.Key(), followRefs, seen); k != "" {
				return k
			}
			return keyField(u.Elem(), followRefs, seen)
		}
	}
	return ""
}

// module is the packages of this module and everything they import, with
// the export data of each (go list -export: the build cache's).
type module struct {
	pkgs    []listedPackage
	exports map[string]string
}

type listedPackage struct {
	ImportPath, Dir, Export string
	GoFiles, CgoFiles       []string
	Module                  *struct{ Main bool }
	Error                   *struct{ Err string }
}

func (m *module) open(path string) (io.ReadCloser, error) {
	file, ok := m.exports[path]
	if !ok || file == "" {
		return nil, fmt.Errorf("no export data for %s", path)
	}
	return os.Open(file)
}

var (
	moduleOnce sync.Once
	moduleList *module
	moduleErr  error
)

// listModule runs go list once for the tests that need type information.
func listModule(t *testing.T) *module {
	t.Helper()
	moduleOnce.Do(func() {
		cmd := exec.Command("go", "list", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,CgoFiles,Module,Error", "./...")
		cmd.Dir = ".."
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			moduleErr = fmt.Errorf("go list: %v\n%s", err, stderr.Bytes())
			return
		}
		m := &module{exports: map[string]string{}}
		for dec := json.NewDecoder(bytes.NewReader(out)); ; {
			var p listedPackage
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				moduleErr = err
				return
			}
			if p.Error != nil {
				moduleErr = fmt.Errorf("go list: %s: %s", p.ImportPath, p.Error.Err)
				return
			}
			m.pkgs = append(m.pkgs, p)
			m.exports[p.ImportPath] = p.Export
		}
		moduleList = m
	})
	if moduleErr != nil {
		t.Fatal(moduleErr)
	}
	return moduleList
}
