package processor

import (
	"context"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/leadpipe/leadpipe/internal/visit"
	"github.com/leadpipe/leadpipe/store"
)

// Visits are built here, as hits are stored, rather than in ClickHouse: a
// new visit begins after visit.Gap of inactivity, and whether a hit opens
// one depends on the visitor's previous hit, which may have been stored by
// an earlier insert. A materialized view only sees the block being
// inserted, and a query-time sessionization (window functions over raw
// hits) would cost every feed read what is decided here once. So the
// processor stamps each stored hit with its visit (visit_id, visit_start,
// new_visit on the hit that opened it, and its source), and ClickHouse
// only sums: company_daily counts visits as sum(new_visit), and the visits
// table merges a visit's hits with argMin/argMax states, whatever inserts
// they came in (as Plausible does with its sessions table, but without
// rewriting rows).
//
// The processor remembers the visits open in the last visit.Gap. A hit of
// a visitor it does not remember, or one that falls outside the visit it
// remembers, is looked up in ClickHouse (one query per batch): another
// processor, or this one before a restart, may have stored the visitor's
// previous hit. What remains open: two processors holding hits of one
// visitor in batches written within the same second can each open a visit,
// splitting it in two. Hits are never counted twice; only such a visit is.

// sessionKey is whose visit a hit belongs to: visits are per company, so a
// visitor whose laptop moves between two companies' networks has two.
type sessionKey struct {
	site, company string
	visitor       uint64
}

// openVisit is what the processor remembers of a visit.
type openVisit struct {
	id          uint64
	start, last time.Time
}

// contains reports whether a hit at ts belongs to v: no more than the gap
// after its latest hit, or before its start (a hit that arrived late).
func (v *openVisit) contains(ts time.Time) bool {
	return !ts.After(v.last.Add(visit.Gap)) && !ts.Before(v.start.Add(-visit.Gap))
}

// maxOpenVisits bounds what the processor remembers (about 100 bytes
// each); beyond it, the oldest are looked up again when they come back.
const maxOpenVisits = 500_000

type sessions struct {
	db     *store.DB
	open   map[sessionKey]*openVisit
	newest time.Time // the latest hit seen
	swept  time.Time
}

func newSessions(db *store.DB) *sessions {
	return &sessions{db: db, open: map[sessionKey]*openVisit{}}
}

// visitID is a visit's id: the same for the same visitor, company and
// start, so a batch built again after a crash gets the ids it got before.
func visitID(k sessionKey, start time.Time) uint64 {
	h := xxhash.New()
	_, _ = h.WriteString(k.site)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(k.company)
	var buf [16]byte
	for i := range 8 {
		buf[i] = byte(k.visitor >> (8 * i))
		buf[8+i] = byte(uint64(start.UnixMilli()) >> (8 * i))
	}
	_, _ = h.Write(buf[:])
	return h.Sum64()
}

// assign stamps rows with their visits. It changes nothing it remembers
// before the lookup succeeded, so a failed call can simply be repeated.
func (s *sessions) assign(ctx context.Context, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	var unknown []int
	for i := range rows {
		r := &rows[i]
		r.Source = visit.Source(r.URL, r.Referrer)
		if v := s.open[sessionKey{r.SiteID, r.CompanyID, r.VisitorID}]; v == nil || !v.contains(r.TS) {
			unknown = append(unknown, i)
		}
	}
	found, err := s.lookup(ctx, rows, unknown)
	if err != nil {
		return err
	}
	for k, v := range found {
		if cur := s.open[k]; cur == nil || cur.last.Before(v.last) {
			s.open[k] = v
		}
	}
	// A visitor's hits in time order, so the first of a new visit opens it.
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return rows[a].TS.Compare(rows[b].TS) })
	for _, i := range order {
		r := &rows[i]
		k := sessionKey{r.SiteID, r.CompanyID, r.VisitorID}
		v := s.open[k]
		if v == nil || !v.contains(r.TS) {
			nv := &openVisit{id: visitID(k, r.TS), start: r.TS, last: r.TS}
			r.NewVisit = 1
			if v == nil || v.last.Before(r.TS) {
				s.open[k] = nv
			}
			v = nv
		}
		if r.TS.After(v.last) {
			v.last = r.TS
		}
		r.VisitID, r.VisitStart = v.id, v.start
		if r.TS.After(s.newest) {
			s.newest = r.TS
		}
	}
	s.sweep()
	return nil
}

// sweep forgets visits that have ended; if too many remain open, it
// forgets some more (they are looked up when they come back).
func (s *sessions) sweep() {
	if len(s.open) < maxOpenVisits && s.newest.Sub(s.swept) < visit.Gap/6 {
		return
	}
	s.swept = s.newest
	horizon := s.newest.Add(-2 * visit.Gap)
	for k, v := range s.open {
		if v.last.Before(horizon) {
			delete(s.open, k)
		}
	}
	for k := range s.open {
		if len(s.open) < maxOpenVisits*3/4 {
			break
		}
		delete(s.open, k)
	}
}

// lookup finds, for the rows at idx, the latest visit of their visitor
// stored around their time.
func (s *sessions) lookup(ctx context.Context, rows []row, idx []int) (map[sessionKey]*openVisit, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	keys := make([]store.VisitKey, 0, len(idx))
	from, to := rows[idx[0]].TS, rows[idx[0]].TS
	for _, i := range idx {
		r := &rows[i]
		keys = append(keys, store.VisitKey{SiteID: r.SiteID, CompanyID: r.CompanyID, VisitorID: r.VisitorID})
		from, to = minTime(from, r.TS), maxTime(to, r.TS)
	}
	visits, err := s.db.LatestVisits(ctx, keys, from, to, visit.Gap)
	if err != nil {
		return nil, err
	}
	found := make(map[sessionKey]*openVisit, len(visits))
	for _, v := range visits {
		found[sessionKey{v.SiteID, v.CompanyID, v.VisitorID}] = &openVisit{id: v.VisitID, start: v.Start, last: v.Last}
	}
	return found, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
