package handshake

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
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
