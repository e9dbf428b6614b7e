// Package cache says where leadpipe's downloads live: the ClickHouse engine
// and the IP data that `make setup` fetches, pinned and checked, into a
// cache outside the repository. scripts/setup.sh writes the same place.
//
// It imports nothing of leadpipe's; everything that reads a download
// imports it.
package cache

import (
	"os"
	"path/filepath"
)

// Dir is the download cache: $LEADPIPE_CACHE, else leadpipe under the
// user's cache directory ($XDG_CACHE_HOME, else ~/.cache), as
// scripts/setup.sh has it.
func Dir() string {
	if d := os.Getenv("LEADPIPE_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "leadpipe")
	}
	return filepath.Join(os.TempDir(), "leadpipe-cache")
}

// Current is the verified set of downloads in use (setup's "current").
func Current() string { return filepath.Join(Dir(), "current") }

// IPDataDir is where the IP data is: $LEADPIPE_ASN_DIR, else the cache's.
func IPDataDir() string {
	if d := os.Getenv("LEADPIPE_ASN_DIR"); d != "" {
		return d
	}
	return filepath.Join(Current(), "ipdb")
}

// EvalDir holds the held-out samples that tests measure filters against
// (crawler and browser user agents): downloads, never embedded.
func EvalDir() string { return filepath.Join(Current(), "eval") }
