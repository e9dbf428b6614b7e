package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/leadpipe/leadpipe/ipintel"
)

// runRIR handles `leadpipe rir import [--data-dir DIR] FILE…`: it reads the
// registry files the operator obtained (RPSL split dumps or ARIN's bulk
// WHOIS, plain or gzip), keeps the assignments that are a company's own
// network and writes them to the data dir, where serve, process, query and ip lookup read them (a
// running serve after `leadpipe ipdb reload`). The last line is the summary
// scripts read.
func runRIR(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "import" {
		return usageError{errors.New("usage: leadpipe rir import [--data-dir DIR] FILE [FILE ...]")}
	}
	fs := flag.NewFlagSet("rir import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./data", "the data dir the assignments are imported into")
	countries := fs.String("countries", "", "keep only assignments registered in these countries: two-letter codes, comma-separated (empty = all)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{errors.New("usage: leadpipe rir import [--data-dir DIR] FILE [FILE ...] (RPSL inetnum, inet6num and organisation objects, or ARIN bulk WHOIS nets, orgs and customers; gzip or plain)")}
	}
	cls, err := ipintel.DefaultClassifier()
	if err != nil {
		return err
	}
	ri := ipintel.NewRegistryImport(cls)
	if *countries != "" {
		ri.Countries = map[string]bool{}
		for _, c := range strings.Split(*countries, ",") {
			c = strings.ToUpper(strings.TrimSpace(c))
			if len(c) != 2 {
				return usageError{fmt.Errorf("--countries: %q is not a two-letter country code", c)}
			}
			ri.Countries[c] = true
		}
	}
	if err := ri.ReadFiles(fs.Args()...); err != nil {
		return err
	}
	kept, stats := ri.Result()
	path := ipintel.RegistryFile(*dataDir)
	if err := ipintel.WriteRegistry(path, kept); err != nil {
		return fmt.Errorf("--data-dir: writing %s: %w", path, err)
	}
	reasons := make([]string, 0, len(stats.Skipped))
	for r := range stats.Skipped {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		fmt.Fprintf(stdout, "skipped: %s=%d\n", r, stats.Skipped[r])
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	fmt.Fprintf(stdout, "rir: networks=%d companies=%d skipped=%d\n", stats.Networks, stats.Companies, stats.SkippedTotal())
	return nil
}
