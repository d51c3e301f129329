package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryErrorCodeIsDocumented reads the Code… constants of this package (and the ones it takes
// from internal/apiwire) from the source and wants each in api/README.md's table of codes.
func TestEveryErrorCodeIsDocumented(t *testing.T) {
	wire := codeConsts(t, filepath.Join("..", "internal", "apiwire"), nil)
	codes := codeConsts(t, ".", wire)
	require.Contains(t, codes, "CodeForeignOrigin")
	require.Greater(t, len(codes), 30, "the parser found the constants")
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	for name, code := range codes {
		assert.True(t, strings.Contains(string(readme), "| `"+code+"` |"), "%s (%q) is not in README.md's table of codes", name, code)
	}
}

// codeConsts maps the names of the constants Code… of the non-test files in dir to their values:
// string literals, or constants of internal/apiwire (from wire).
func codeConsts(t *testing.T, dir string, wire map[string]string) map[string]string {
	t.Helper()
	pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	require.NoError(t, err)
	out := map[string]string{}
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				vs, ok := n.(*ast.ValueSpec)
				if !ok {
					return true
				}
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
						continue
					}
					switch v := vs.Values[i].(type) {
					case *ast.BasicLit:
						if s, err := strconv.Unquote(v.Value); err == nil {
							out[name.Name] = s
						}
					case *ast.SelectorExpr:
						if s, ok := wire[v.Sel.Name]; ok {
							out[name.Name] = s
						} else {
							t.Errorf("%s = %s.%s: value unknown", name.Name, v.X, v.Sel.Name)
						}
					}
				}
				return true
			})
		}
	}
	return out
}
