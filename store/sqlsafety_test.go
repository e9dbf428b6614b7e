package store_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sqlWords marks a string literal as SQL.
var sqlWords = regexp.MustCompile(`\b(SELECT|INSERT INTO|DELETE FROM|ALTER TABLE|CREATE TABLE|DROP |WHERE|OPTIMIZE TABLE|TRUNCATE)\b`)

// TestNoSQLBuiltByFormatting reads every Go file of the module and fails on
// SQL made from values: a format call (fmt.Sprintf and friends) whose
// format is SQL, or a string concatenation of SQL text with anything that
// is not a constant. Values must reach ClickHouse as bound parameters;
// queries may only be assembled from constants.
func TestNoSQLBuiltByFormatting(t *testing.T) {
	t.Parallel()
	root := ".."
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{} // directory → files
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "data" || strings.HasPrefix(d.Name(), ".") && path != root) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return err
		}
		pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, files := range pkgs {
		consts := map[string]bool{}
		for _, f := range files {
			for _, decl := range f.Decls {
				if g, ok := decl.(*ast.GenDecl); ok && g.Tok == token.CONST {
					for _, spec := range g.Specs {
						for _, n := range spec.(*ast.ValueSpec).Names {
							consts[n.Name] = true
						}
					}
				}
			}
		}
		isSQL := func(e ast.Expr) bool {
			lit, ok := e.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return false
			}
			s, _ := strconv.Unquote(lit.Value)
			return sqlWords.MatchString(s)
		}
		var constant func(e ast.Expr) bool
		constant = func(e ast.Expr) bool {
			switch x := e.(type) {
			case *ast.BasicLit:
				return true
			case *ast.Ident:
				return consts[x.Name]
			case *ast.ParenExpr:
				return constant(x.X)
			case *ast.BinaryExpr:
				return constant(x.X) && constant(x.Y)
			case *ast.CallExpr:
				// store's columnsOf(T{}) lists the ch tags of a type:
				// column names from the source, not values.
				fn, ok := x.Fun.(*ast.Ident)
				if ok && fn.Name == "columnsOf" && len(x.Args) == 1 {
					_, lit := x.Args[0].(*ast.CompositeLit)
					return lit
				}
			}
			return false
		}
		for _, f := range files {
			checked++
			ast.Inspect(f, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.CallExpr:
					sel, ok := x.Fun.(*ast.SelectorExpr)
					if !ok || len(x.Args) == 0 {
						return true
					}
					if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "fmt" && strings.Contains("Sprintf Sprint Appendf Fprintf", sel.Sel.Name) {
						for _, a := range x.Args {
							if isSQL(a) {
								t.Errorf("%s: SQL built with fmt.%s", fset.Position(x.Pos()), sel.Sel.Name)
							}
						}
					}
				case *ast.BinaryExpr:
					if x.Op == token.ADD && (isSQL(x.X) || isSQL(x.Y)) && !constant(x) {
						t.Errorf("%s: SQL concatenated with a value", fset.Position(x.Pos()))
					}
				}
				return true
			})
		}
	}
	if checked < 50 {
		t.Fatalf("only %d Go files checked: the walk missed the module", checked)
	}
}
