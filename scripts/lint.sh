#!/usr/bin/env bash
# make lint: what keeps the tree readable and the repository small.
#   gofmt, go vet, staticcheck (pinned as a tool in go.mod), go mod tidy
#   unchanged, the import boundaries between the parts of the pipeline,
#   no Go file over 600 lines or function over 100 (internal/tools/funclen),
#   and no tracked file over 2 MB (binaries and downloads stay out of git).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
step() { echo "lint: $*" >&2; }

step gofmt
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt: these files need \`make fmt\`:" >&2
  echo "$unformatted" >&2
  fail=1
fi

step go vet
go vet ./... || fail=1

step staticcheck
go tool staticcheck ./... || fail=1

step "go mod tidy"
if ! go mod tidy -diff >/dev/null; then
  echo "go.mod/go.sum are not tidy: run \`go mod tidy\`" >&2
  go mod tidy -diff >&2 || true
  fail=1
fi

step "import boundaries"
# Data flows collector → processor → ClickHouse ← api: the stages never
# import each other; ipintel, store and internal/ import no stage; nothing
# but cmd/ and bench/ imports the wiring (cmd/, app/).
mod=$(go list -m)
go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... | sed "s|$mod/||g" | awk '
  function stage(p) { return p ~ /^(collector|processor|api)(\/|$)/ }
  function top(p)   { split(p, a, "/"); return a[1] }
  function wiring(p) { return p ~ /^cmd\// || p ~ /^app(\/|$)/ }
  {
    pkg = $1
    for (i = 2; i <= NF; i++) {
      imp = $i
      bad = ""
      if (stage(pkg) && stage(imp) && top(pkg) != top(imp)) bad = "a stage imports another stage"
      else if (pkg ~ /^(ipintel|store)(\/|$)/ && stage(imp)) bad = "ipintel and store import no stage"
      else if (pkg ~ /^internal\// && !wiring(pkg) && stage(imp)) bad = "internal/ imports no stage"
      else if (wiring(imp) && !wiring(pkg) && pkg !~ /^bench\//) bad = "only cmd/ and bench/ import the wiring"
      if (bad != "") { printf "%s imports %s: %s\n", pkg, imp, bad; n++ }
    }
  }
  END { exit n > 0 }
' >&2 || fail=1

step "file and function lengths"
go run ./internal/tools/funclen $(git ls-files '*.go') || fail=1

step "tracked file sizes"
big=$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$1 > 2*1024*1024 { print }')
if [ -n "$big" ]; then
  echo "tracked files over 2 MB (build outputs and downloads stay out of git):" >&2
  echo "$big" >&2
  fail=1
fi

[ "$fail" = 0 ] && echo "lint: ok" >&2
exit "$fail"
