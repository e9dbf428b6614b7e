package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/leadpipe/leadpipe/store"
)

// The monitor samples, once a second for the whole run: how many hits the
// collector accepted, how many the pipeline has counted in ClickHouse (kept
// in hits, or dropped and counted in the filter ledger), and the CPU and
// resident memory of every part. From the first two it derives the lag:
// how long ago the collector had accepted as many hits as ClickHouse now
// shows.

// part is a process whose CPU and memory the monitor samples.
type part struct {
	name string
	pid  func() int
}

type sample struct {
	at        time.Duration // since the monitor started
	accepted  int64
	processed int64
	lag       time.Duration
	cpu       map[string]float64 // cores used since the previous sample
	rssMB     map[string]float64
	phase     string
}

type monitor struct {
	start    time.Time
	accepted *atomic.Int64
	conn     driver.Conn
	site     string
	parts    []part

	mu       sync.Mutex
	samples  []sample
	phase    string
	acceptAt []acceptPoint // the accepted count, every 100 ms
	lastCPU  map[string]cpuMark
}

// cpuMark is a part's CPU seconds when last read, and when (seconds since
// the monitor started).
type cpuMark struct{ secs, at float64 }

type acceptPoint struct {
	at time.Duration
	n  int64
}

func newMonitor(accepted *atomic.Int64, conn driver.Conn, site string, parts []part) *monitor {
	return &monitor{start: time.Now(), accepted: accepted, conn: conn, site: site, parts: parts, lastCPU: map[string]cpuMark{}}
}

func (m *monitor) setPhase(p string) {
	m.mu.Lock()
	m.phase = p
	m.mu.Unlock()
}

// processed counts the site's hits ClickHouse holds: kept, or dropped and
// counted in the filter ledger.
func processed(ctx context.Context, conn driver.Conn, site string) (int64, error) {
	kept, filtered, err := store.New(conn).SiteProcessed(ctx, site)
	return int64(kept + filtered), err
}

func (m *monitor) run(ctx context.Context) {
	fast := time.NewTicker(100 * time.Millisecond)
	defer fast.Stop()
	slow := time.NewTicker(time.Second)
	defer slow.Stop()
	m.sampleCPU() // the baseline of the first interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-fast.C:
			m.mu.Lock()
			m.acceptAt = append(m.acceptAt, acceptPoint{time.Since(m.start), m.accepted.Load()})
			m.mu.Unlock()
		case <-slow.C:
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			n, err := processed(qctx, m.conn, m.site)
			cancel()
			if err != nil {
				continue // the engine is busy; the next second will tell
			}
			cpu, rss := m.sampleCPU()
			now := time.Since(m.start)
			m.mu.Lock()
			m.samples = append(m.samples, sample{at: now, accepted: m.accepted.Load(), processed: n,
				lag: m.lagLocked(now, n), cpu: cpu, rssMB: rss, phase: m.phase})
			m.mu.Unlock()
		}
	}
}

// lagLocked is how long ago the oldest hit not yet counted was accepted:
// when the collector's count first passed n, the count ClickHouse shows.
func (m *monitor) lagLocked(now time.Duration, n int64) time.Duration {
	i := sort.Search(len(m.acceptAt), func(i int) bool { return m.acceptAt[i].n > n })
	if i == len(m.acceptAt) {
		return 0 // caught up with everything accepted
	}
	return now - m.acceptAt[i].at
}

// since returns the samples taken after t.
func (m *monitor) since(t time.Duration) []sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.samples), func(i int) bool { return m.samples[i].at > t })
	return append([]sample(nil), m.samples[i:]...)
}

func (m *monitor) now() time.Duration { return time.Since(m.start) }

// ticksPerSecond is the kernel's USER_HZ, 100 on Linux everywhere.
const ticksPerSecond = 100

// sampleCPU reads each part's CPU time and resident memory from /proc;
// the CPU figure is cores used since the previous call.
func (m *monitor) sampleCPU() (map[string]float64, map[string]float64) {
	cpu, rss := map[string]float64{}, map[string]float64{}
	now := float64(time.Since(m.start)) / float64(time.Second)
	for _, p := range m.parts {
		pid := p.pid()
		if pid == 0 {
			continue
		}
		secs, mb, err := procStat(pid)
		if err != nil {
			continue
		}
		if last, ok := m.lastCPU[p.name]; ok && now > last.at {
			cpu[p.name] = (secs - last.secs) / (now - last.at)
		}
		m.lastCPU[p.name] = cpuMark{secs, now}
		rss[p.name] = mb
	}
	return cpu, rss
}

// procStat returns a process's CPU seconds (user and system) and resident
// memory in MiB.
func procStat(pid int) (float64, float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces: fields are counted after its ')'.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var rssKB float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			rssKB, _ = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		}
	}
	return (utime + stime) / ticksPerSecond, rssKB / 1024, nil
}
