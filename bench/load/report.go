package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report is what a run measured.
type report struct {
	cfg      config
	started  time.Time
	machine  string
	workload *workload

	bartNS, rangerNS float64
	prefixes         int

	null, collectorMax *result
	jsRaw              float64

	e2e   int
	steps []stepResult

	sustained      *result
	sustainSamples []sample

	procInsert, rawInsert float64
	batch, rawRows        int

	accepted, processed, lost int64
	samples                   []sample
	restarts                  map[string]int
}

func (r *report) collectorVsNull() float64 {
	if r.null == nil || r.null.achieved() == 0 {
		return 0
	}
	return r.collectorMax.achieved() / r.null.achieved()
}

func (r *report) insertVsRaw() float64 {
	if r.rawInsert == 0 {
		return 0
	}
	return r.procInsert / r.rawInsert
}

func (r *report) lastLine() string {
	return fmt.Sprintf("bench: e2e_hits_per_s=%d collector_vs_null=%.2f lookup_vs_cidranger=%.1f ch_insert_vs_raw=%.2f lost=%d",
		r.e2e, r.collectorVsNull(), r.rangerNS/r.bartNS, r.insertVsRaw(), r.lost)
}

// write puts the report and the chart under dir, named by the start time,
// and copies them to latest.md and latest.svg.
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := r.started.UTC().Format("20060102T150405Z")
	if r.cfg.short {
		name += "-short"
	}
	svg := r.chart()
	md := r.markdown(name + ".svg")
	for _, f := range []struct{ path, data string }{
		{filepath.Join(dir, name+".md"), md}, {filepath.Join(dir, name+".svg"), svg},
		{filepath.Join(dir, "latest.md"), strings.ReplaceAll(md, name+".svg", "latest.svg")}, {filepath.Join(dir, "latest.svg"), svg},
	} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o644); err != nil {
			return err
		}
	}
	say("report: %s", filepath.Join(dir, name+".md"))
	return nil
}

func (r *report) markdown(chart string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	mode := "default"
	if r.cfg.short {
		mode = "short (--short)"
	}
	p("# leadpipe benchmark, %s", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	p("")
	p("Mode: %s. Machine: %s. Commit: %s.", mode, r.machine, gitCommit())
	p("Everything on this one machine: load generator, collector, processor, JetStream, ClickHouse.")
	p("")
	p("    %s", r.lastLine())
	p("")
	p("| measure | result | target |")
	p("|---|---|---|")
	p("| `e2e_hits_per_s`: highest rate with every hit accepted, lag ≤ %v, backlog gone ≤ %v after | **%d** hits/s | ≥ 30,000 |", r.cfg.lagBound, r.cfg.lagBound, r.e2e)
	p("| `collector_vs_null`: collector (durable JetStream acks) ÷ null fasthttp handler, each as fast as it goes | **%.2f** (%.0f ÷ %.0f /s) | ≥ 0.7 |", r.collectorVsNull(), r.collectorMax.achieved(), r.null.achieved())
	if r.sustained != nil {
		p("| collector p99 at half the highest rate (%d/s), from the scheduled send time | **%s** | < 10 ms |", r.sustained.rate, us(r.sustained.lat.ValueAtQuantile(99)))
	}
	p("| `ch_insert_vs_raw`: processor's insert rate (draining a backlog) ÷ raw inserts of the same rows (the store's, column by column, nothing of the processor around them) | **%.2f** (%.0f ÷ %.0f rows/s, batches of %d) | ≥ 0.8 |", r.insertVsRaw(), r.procInsert, r.rawInsert, r.batch)
	p("| `lookup_vs_cidranger`: cidranger ns ÷ bart ns per lookup, %d prefixes | **%.1f** (%.0f ÷ %.0f ns) | ≥ 15 |", r.prefixes, r.rangerNS/r.bartNS, r.rangerNS, r.bartNS)
	p("| `lost`: accepted by the collector − counted in ClickHouse (kept or in the filter ledger) | **%d** (%d accepted, %d counted) | 0 |", r.lost, r.accepted, r.processed)
	p("")
	p("Raw JetStream async publish of the same payloads (file store, as HITS; no collector): %.0f msgs/s.", r.jsRaw)
	p("")
	p("Workload: %d hit templates (pageviews and engagement pings of sessions of 2–6 pages), visitors from real networks of the ASN data, mix `%s`, %.0f%% crawlers or scripts; %.0f%% of hits come from business networks and humans and are kept, the rest is dropped before storage and counted in the filter ledger.",
		len(r.workload.hits), r.cfg.mix, 100*r.cfg.botShare, 100*r.workload.keptShare)
	p("")
	p("![throughput and lag](%s)", chart)
	p("")
	p("## Rate search")
	p("")
	p("Each rate offered open-loop for %v; the collector's latency is measured from each hit's scheduled send time.", r.cfg.step)
	p("")
	p("| offered /s | accepted | p50 | p99 | p99.9 | max lag | drained after | verdict |")
	p("|---|---|---|---|---|---|---|---|")
	for _, s := range r.steps {
		verdict := "sustained"
		if !s.ok {
			verdict = s.why
		}
		p("| %d | %d/%d | %s | %s | %s | %v | %v | %s |", s.rate, s.res.accepted, s.res.offered, us(s.res.lat.ValueAtQuantile(50)),
			us(s.res.lat.ValueAtQuantile(99)), us(s.res.lat.ValueAtQuantile(99.9)), s.maxLag.Round(100*time.Millisecond), s.drainFor.Round(100*time.Millisecond), verdict)
	}
	p("")
	if r.sustained != nil {
		p("## Sustained run: %d hits/s for %v", r.sustained.rate, r.cfg.sustain)
		p("")
		p("Accepted %d of %d; collector latency p50 %s, p99 %s, p99.9 %s, max %s.", r.sustained.accepted, r.sustained.offered,
			us(r.sustained.lat.ValueAtQuantile(50)), us(r.sustained.lat.ValueAtQuantile(99)), us(r.sustained.lat.ValueAtQuantile(99.9)), us(r.sustained.lat.Max()))
		var lags []time.Duration
		for _, s := range r.sustainSamples {
			lags = append(lags, s.lag)
		}
		if len(lags) > 0 {
			slices.Sort(lags)
			p("End-to-end lag (accepted → counted in ClickHouse, sampled each second): p50 %v, p99 %v, max %v.",
				lags[len(lags)/2].Round(100*time.Millisecond), lags[len(lags)*99/100].Round(100*time.Millisecond), lags[len(lags)-1].Round(100*time.Millisecond))
		}
		p("")
		p("| part | CPU, cores (mean) | CPU per hit | RSS first tenth, MiB | RSS last tenth, MiB | RSS max, MiB |")
		p("|---|---|---|---|---|---|")
		var total float64
		for _, name := range []string{"collector", "processor", "jetstream", "clickhouse", "load generator"} {
			cpu, first, last, peak := partStats(r.sustainSamples, name)
			total += cpu
			p("| %s | %.2f | %.0f µs | %.0f | %.0f | %.0f |", name, cpu, cpu*1e6/float64(r.sustained.rate), first, last, peak)
		}
		perHit := total * 1e6 / float64(r.sustained.rate)
		p("| all | %.2f | %.0f µs | | | |", total, perHit)
		p("")
		p("CPU per hit falls as the rate rises (hits share JetStream messages and batches, idle wake-ups are spread over more hits); see the budget at the highest sustained rate below.")
		p("")
	}
	r.budget(p)
	p("## Parts over the whole run")
	p("")
	p("| phase | seconds | collector | processor | jetstream | clickhouse | load generator |")
	p("|---|---|---|---|---|---|---|")
	for _, ph := range phases(r.samples) {
		row := fmt.Sprintf("| %s | %d |", ph.name, len(ph.samples))
		for _, name := range []string{"collector", "processor", "jetstream", "clickhouse", "load generator"} {
			cpu, _, _, peak := partStats(ph.samples, name)
			row += fmt.Sprintf(" %.2f cores, %.0f MiB |", cpu, peak)
		}
		p("%s", row)
	}
	p("")
	p("## How it was measured")
	p("")
	p("`make bench` (`bench/load`). The collector and the processor are `leadpipe collect` and `leadpipe process` processes of the built binary; JetStream is the server `leadpipe serve` embeds (file store, encrypted, default sync), run as a process of its own; ClickHouse is the managed engine. CPU and resident memory come from `/proc/<pid>/stat` and `status` once a second. The lag is how long before a sample the collector had accepted as many hits as ClickHouse then counted. The null handler reads each body and answers 204; it and the collector are each driven closed-loop over %d connections for %v, the processor paused (SIGSTOP) while the collector is. The processor's insert rate is rows over time spent in its inserts (its own metrics) while it drains the collector's backlog, nothing else running; raw inserts re-insert rows it wrote, as another site, with the same settings and batch size, nothing else running either. Lookups: %d random addresses inside the table's prefixes, cidranger checked to answer as bart does. Restarts during the run: %v.",
		r.cfg.conns, r.cfg.saturate, 1<<16, r.restarts)
	return b.String()
}

// budget shows the CPU each part spent per hit at the highest sustained
// rate of the search, and what that leaves of the 30,000 hits/s target.
func (r *report) budget(p func(string, ...any)) {
	name := fmt.Sprintf("search %d/s", r.e2e)
	var samples []sample
	for _, ph := range phases(r.samples) {
		if ph.name == name {
			samples = append(samples, ph.samples...)
		}
	}
	if len(samples) == 0 || r.e2e == 0 {
		return
	}
	p("## CPU budget at the highest sustained rate (%d hits/s)", r.e2e)
	p("")
	p("| part | cores | CPU per hit |")
	p("|---|---|---|")
	var total float64
	for _, part := range []string{"collector", "processor", "jetstream", "clickhouse", "load generator"} {
		cpu, _, _, _ := partStats(samples, part)
		total += cpu
		p("| %s | %.2f | %.0f µs |", part, cpu, cpu*1e6/float64(r.e2e))
	}
	perHit := total * 1e6 / float64(r.e2e)
	p("| all | %.2f | %.0f µs |", total, perHit)
	p("")
	p("%d cores give %.0f µs of CPU per second; 30,000 hits/s leaves %.0f µs per hit for all parts together, load generator included, against %.0f µs spent here: the target needs every part %.1f× cheaper, or more cores.",
		runtime.NumCPU(), float64(runtime.NumCPU())*1e6, float64(runtime.NumCPU())*1e6/30000, perHit, perHit/(float64(runtime.NumCPU())*1e6/30000))
	p("")
}

type phase struct {
	name    string
	samples []sample
}

func phases(samples []sample) []phase {
	var out []phase
	for _, s := range samples {
		if len(out) == 0 || out[len(out)-1].name != s.phase {
			out = append(out, phase{name: s.phase})
		}
		out[len(out)-1].samples = append(out[len(out)-1].samples, s)
	}
	return out
}

// partStats returns a part's mean CPU and its RSS over the first and last
// tenth of the samples, and at most.
func partStats(samples []sample, name string) (cpu, first, last, peak float64) {
	if len(samples) == 0 {
		return
	}
	tenth := max(len(samples)/10, 1)
	for i, s := range samples {
		cpu += s.cpu[name]
		peak = max(peak, s.rssMB[name])
		if i < tenth {
			first += s.rssMB[name] / float64(tenth)
		}
		if i >= len(samples)-tenth {
			last += s.rssMB[name] / float64(tenth)
		}
	}
	return cpu / float64(len(samples)), first, last, peak
}

// chart draws accepted and counted hits per second, and the lag, over the
// whole run, with the phases marked.
func (r *report) chart() string {
	const w, h, pad = 960, 420, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`, w, h)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>`)
	if len(r.samples) < 2 {
		b.WriteString(`</svg>`)
		return b.String()
	}
	end := r.samples[len(r.samples)-1].at.Seconds()
	type point struct{ t, acc, proc, lag float64 }
	var pts []point
	var maxRate, maxLag float64 = 1, 1
	for i := 1; i < len(r.samples); i++ {
		a, c := r.samples[i-1], r.samples[i]
		dt := (c.at - a.at).Seconds()
		if dt <= 0 {
			continue
		}
		p := point{c.at.Seconds(), float64(c.accepted-a.accepted) / dt, float64(c.processed-a.processed) / dt, c.lag.Seconds()}
		maxRate, maxLag = max(maxRate, p.acc, p.proc), max(maxLag, p.lag)
		pts = append(pts, p)
	}
	top, mid := 20.0, 250.0 // panels: rates from top to mid-30, lag from mid to h-pad
	x := func(t float64) float64 { return pad + t/end*(w-2*pad) }
	yr := func(v float64) float64 { return mid - 30 - v/maxRate*(mid-30-top) }
	yl := func(v float64) float64 { return h - pad - v/maxLag*(h-pad-mid) }
	line := func(color string, y func(point) float64) {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.2" points="`, color)
		for _, p := range pts {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p.t), y(p))
		}
		b.WriteString(`"/>`)
	}
	for _, ph := range phases(r.samples) {
		t := ph.samples[0].at.Seconds()
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%d" stroke="#ddd"/>`, x(t), top, x(t), h-pad)
	}
	line("#1f6feb", func(p point) float64 { return yr(p.acc) })
	line("#d97706", func(p point) float64 { return yr(p.proc) })
	line("#b3261e", func(p point) float64 { return yl(p.lag) })
	fmt.Fprintf(&b, `<text x="%d" y="%.0f">%.0f hits/s</text><text x="%d" y="%.0f">0</text>`, 4, top+4, maxRate, 4, mid-30)
	fmt.Fprintf(&b, `<text x="%d" y="%.0f">%.1f s lag</text><text x="%d" y="%d">0</text>`, 4, mid+4, maxLag, 4, h-pad)
	fmt.Fprintf(&b, `<text x="%d" y="%d">0 s</text><text x="%d" y="%d" text-anchor="end">%.0f s</text>`, pad, h-pad+16, w-pad, h-pad+16, end)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#1f6feb">accepted by the collector /s</text><text x="%d" y="%d" fill="#d97706">counted in ClickHouse /s</text><text x="%d" y="%d" fill="#b3261e">lag</text>`,
		pad, h-12, pad+200, h-12, pad+390, h-12)
	b.WriteString(`</svg>`)
	return b.String()
}

// machine describes the CPU and the cores.
func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%d cores, %s, %s", runtime.NumCPU(), model, runtime.Version())
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
