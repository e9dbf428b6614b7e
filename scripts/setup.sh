#!/usr/bin/env bash
# Fetches what leadpipe needs beyond its source, idempotently, into a cache
# outside the repository: Go modules, the ClickHouse engine (libchdb.so,
# 566 MB), the IP data and the samples the bot filter is measured against.
# Every download is pinned to a version and checked against the registry's
# sha512 integrity before it is used.
#
#   LEADPIPE_CACHE  cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/leadpipe)
#
# With --browser it also makes sure a Chromium is there for the browser tests
# (Debian's chromium package; a test tool's own browser download does not
# work everywhere, Debian's package does).
set -euo pipefail
browser=false
[ "${1:-}" = "--browser" ] && browser=true

cache="${LEADPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leadpipe}"
mkdir -p "$cache/dl" "$cache/current/ipdb" "$cache/current/eval"

# name version sha512-integrity
pins=(
  "@chdb/lib-linux-x64-gnu 26.7.3-stable.1 sha512-XP97mMqnc5tZpKQywR8N7cLTsHNiTmHr30pC5mzo3jWmukjKn2IBa60c2B/gWUNcuFjOMjWoorQICCqBVj5wpw=="
  "@ip-location-db/asn 2.3.2026061719 sha512-PpqYi7wyEyWwunXBtl+y3Vi403SvNywotWwvmiYCOUtE0SVol/Sf492Ee+eErEznmGapxEQB2SAfrpXuZ9a+vQ=="
  "@ip-location-db/geo-whois-asn-country-mmdb 2.3.2026061719 sha512-xemBDNQl4mCYDuVbqe3jKGKsVDykZGkfvebhtOh/3VGLadq8vsp7t7ontpMUt3hH7sAGT0eLDyJ99SV+0waxZg=="
  # Held-out samples the bot filter is measured against (tests only, never embedded):
  # crawler and monitor user agents (MIT), and the most common browsers' (MIT).
  "crawler-user-agents 1.60.0 sha512-p8hKVsnZl3msolBhGW8s86V0tmmcuBSwhTXkzkegGQzTt0A/ysKDHKzek9fichfqL5qBEgDrR9CuGBU0Y7bDrg=="
  "top-user-agents 2.1.138 sha512-yvN+LE7ZHoesZ1fWc0IfaYYQXGEbFtbxjC6D19SclswYlKoF6GKxJSvJbp4fsbya5BllROYml6osNlVCj1TAnw=="
)

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is required: $2" >&2; exit 1; }; }
need go "install Go 1.26 or newer"
need npm "install Node.js and npm (apt-get install nodejs npm)"
need openssl "apt-get install openssl"

# fetch NAME VERSION INTEGRITY: leaves the package's files in $cache/pkg/<name>@<version>/.
fetch() {
  local name=$1 version=$2 integrity=$3
  local dir="$cache/pkg/${name//\//_}@$version"
  if [ -f "$dir/.verified" ]; then
    echo "$dir"; return
  fi
  local tgz="$cache/dl/$(echo "${name#@}" | tr / -)-$version.tgz"
  if [ ! -f "$tgz" ]; then
    echo "setup: fetching $name@$version" >&2
    (cd "$cache/dl" && npm pack --silent "$name@$version" >/dev/null)
  fi
  local got="sha512-$(openssl dgst -sha512 -binary "$tgz" | openssl base64 -A)"
  if [ "$got" != "$integrity" ]; then
    rm -f "$tgz"
    echo "setup: $name@$version failed its integrity check (got $got); removed, run again" >&2
    exit 1
  fi
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  tar xzf "$tgz" -C "$dir.tmp" --strip-components=1
  touch "$dir.tmp/.verified"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  echo "$dir"
}

chdb=$(fetch ${pins[0]})
asn=$(fetch ${pins[1]})
geo=$(fetch ${pins[2]})
crawlers=$(fetch ${pins[3]})
browsers=$(fetch ${pins[4]})
# The tarball is only needed until it is unpacked and verified.
rm -f "$cache"/dl/*.tgz

ln -sfn "$chdb/libchdb.so" "$cache/current/libchdb.so"
for f in asn-ipv4.csv asn-ipv6.csv DBIP-LICENSE ROUTEVIEWS-LICENSE NRO_LICENSE; do
  ln -sfn "$asn/$f" "$cache/current/ipdb/$f"
done
ln -sfn "$geo/geo-whois-asn-country.mmdb" "$cache/current/ipdb/country.mmdb"
ln -sfn "$crawlers/crawler-user-agents.json" "$cache/current/eval/crawler-user-agents.json"
ln -sfn "$browsers/src/index.json" "$cache/current/eval/top-user-agents.json"

if $browser && [ -z "${LEADPIPE_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: the browser tests need Chromium: sudo apt-get install chromium (or set LEADPIPE_CHROMIUM)" >&2
    exit 1
  fi
fi

(cd "$(dirname "$0")/.." && go mod download)
echo "setup: ready in $cache/current" >&2
