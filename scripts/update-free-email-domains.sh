#!/usr/bin/env bash
# Writes collector/data/free_email_domains.txt from npm's free-email-domains
# package (MIT): the domains of free and disposable e-mail providers, whose
# addresses say nothing about a visitor's employer. One domain a line.
#
#   scripts/update-free-email-domains.sh [VERSION]   (default: the version in the file)
#
# Review the diff, run `go test ./collector/` and commit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/collector/data/free_email_domains.txt"
version="${1:-$(sed -n 's/^# free-email-domains@\([^ ]*\).*/\1/p' "$out" 2>/dev/null | head -1)}"
[ -n "$version" ] || { echo "update-free-email-domains: no version given and none in $out" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "free-email-domains@$version" >/dev/null && mkdir pkg && tar xzf ./*.tgz -C pkg --strip-components=1)
{
  echo "# free-email-domains@$version (https://github.com/Kikobeats/free-email-domains, MIT): its domain"
  echo "# list, written by scripts/update-free-email-domains.sh. One domain a line; do not edit by hand."
  node -e 'for (const d of require(process.argv[1] + "/domains.json")) console.log(d.toLowerCase())' "$tmp/pkg"
} > "$out"
echo "update-free-email-domains: $(grep -vc '^#' "$out") domains of free-email-domains@$version in $out" >&2
