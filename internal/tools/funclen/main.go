// Command funclen is make lint's check that code stays readable in pieces:
// no non-test Go file over 600 lines and no function over 100, unless its
// doc comment says why with a line starting "Long:". It reads the files
// named on the command line.
//
// It imports the standard library alone.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
)

const (
	maxFileLines = 600
	maxFuncLines = 100
)

func main() {
	fset := token.NewFileSet()
	bad := 0
	for _, path := range os.Args[1:] {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			bad++
			continue
		}
		if n := fset.Position(f.End()).Line; n > maxFileLines && !says(f.Doc) {
			fmt.Fprintf(os.Stderr, "%s: %d lines (more than %d): split it along its seams\n", path, n, maxFileLines)
			bad++
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			if n > maxFuncLines && !says(fn.Doc) {
				fmt.Fprintf(os.Stderr, "%s: func %s is %d lines (more than %d): split it, or say why in a \"Long:\" line of its doc comment\n",
					fset.Position(fn.Pos()), fn.Name.Name, n, maxFuncLines)
				bad++
			}
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
}

// says reports whether a doc comment explains the length.
func says(doc *ast.CommentGroup) bool {
	if doc == nil {
		return false
	}
	for _, line := range strings.Split(doc.Text(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "Long:") {
			return true
		}
	}
	return false
}
