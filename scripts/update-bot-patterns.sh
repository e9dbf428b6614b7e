#!/usr/bin/env bash
# Writes processor/data/bot_patterns.txt from npm's isbot package (Unlicense):
# its list of generic patterns of crawler, monitor, preview and HTTP-library
# user agents, one JavaScript regular expression a line, matched without case.
#
#   scripts/update-bot-patterns.sh [VERSION]     (default: the version in the file)
#
# Review the diff, run `go test ./processor/` (it measures the list against
# the held-out crawler and browser samples) and commit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/processor/data/bot_patterns.txt"
version="${1:-$(sed -n 's/^# isbot@\([^ ]*\).*/\1/p' "$out" | head -1)}"
[ -n "$version" ] || { echo "update-bot-patterns: no version given and none in $out" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "isbot@$version" >/dev/null && mkdir pkg && tar xzf ./*.tgz -C pkg --strip-components=1)
{
  echo "# isbot@$version (https://github.com/omrilotan/isbot, Unlicense): its pattern list,"
  echo "# written by scripts/update-bot-patterns.sh. One JavaScript regular expression a line,"
  echo "# matched case-insensitively anywhere in the user agent; do not edit by hand."
  node -e 'for (const p of require(process.argv[1]).list) console.log(p)' "$tmp/pkg"
} > "$out"
echo "update-bot-patterns: $(grep -vc '^#' "$out") patterns of isbot@$version in $out" >&2
