package query

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

// auditEntry is one API request as the audit log keeps it.
type auditEntry struct {
	ts                                   time.Time
	keyID, role, method, route, site, ip string
	status                               uint16
	rows                                 uint64
}

// auditLog writes entries in the background in batches, so a request never
// waits for the audit insert; on shutdown it writes what it holds.
type auditLog struct {
	ch      driver.Conn
	log     *slog.Logger
	entries chan auditEntry
	dropped prometheus.Counter
	done    chan struct{}
	once    sync.Once
}

func newAuditLog(ch driver.Conn, reg prometheus.Registerer, log *slog.Logger) *auditLog {
	a := &auditLog{ch: ch, log: log, entries: make(chan auditEntry, 10000), done: make(chan struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leadpipe_api_audit_dropped_total", Help: "Audit entries lost because the audit writer fell behind.",
		})}
	reg.MustRegister(a.dropped)
	go a.run()
	return a
}

func (a *auditLog) record(e auditEntry) {
	select {
	case a.entries <- e:
	default:
		a.dropped.Inc()
		a.log.Error("audit log full: entry dropped", "route", e.route, "key", e.keyID)
	}
}

func (a *auditLog) run() {
	defer close(a.done)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var buf []auditEntry
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if err := a.write(buf); err != nil {
			a.log.Error("writing audit log", "entries", len(buf), "err", err)
			if len(buf) < 100000 {
				return // keep them and retry on the next tick
			}
		}
		buf = buf[:0]
	}
	for {
		select {
		case e, ok := <-a.entries:
			if !ok {
				flush()
				return
			}
			buf = append(buf, e)
			if len(buf) >= 1000 {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

func (a *auditLog) write(entries []auditEntry) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := a.ch.PrepareBatch(ctx, "INSERT INTO audit_log (ts, key_id, role, method, route, site_id, status, rows, remote)")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := b.Append(e.ts, e.keyID, e.role, e.method, e.route, e.site, e.status, e.rows, e.ip); err != nil {
			b.Abort()
			return err
		}
	}
	return b.Send()
}

// close writes what is queued and stops the writer.
func (a *auditLog) close() {
	a.once.Do(func() { close(a.entries) })
	<-a.done
}

// remoteIP is the API caller's address (an operator or a sales team's
// browser, not a website visitor), kept for security reviews.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// setRows tells the audit log how many rows a handler returned.
func setRows(w http.ResponseWriter, n int) {
	if sw, ok := w.(*statusWriter); ok {
		sw.rows = n
	}
}

const auditSQL = `
SELECT ts, key_id, role, method, route, site_id, status, rows, remote
FROM audit_log
WHERE ts >= toDateTime64({from:Date}, 3, 'UTC') AND ts < toDateTime64({to:Date} + 1, 3, 'UTC')
  AND ({all:UInt8} = 1 OR has({sites:Array(String)}, site_id) OR key_id = {key:String})
ORDER BY ts DESC
LIMIT {limit:UInt32}`

// auditEntries serves GET /api/v1/audit to admins: an operator key sees
// every entry; any other admin key sees the entries of the sites it can
// read and its own key's.
func (s *Server) auditEntries(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			writeError(w, http.StatusBadRequest, "limit: must be between 1 and 100000")
			return
		}
		limit = n
	}
	all := "0"
	if key.Account == "" && key.AllSites() {
		all = "1"
	}
	// Site ids are [a-z2-7] (made by leadpipe), so the array literal needs
	// no escaping.
	var ids []string
	for _, site := range s.tenants.SitesOf(key) {
		ids = append(ids, site.ID)
	}
	sites := "[" + strings.Join(quoteAll(ids), ",") + "]"
	rows, err := s.ch.Query(params(r.Context(), clickhouse.Parameters{"from": from, "to": to, "all": all, "sites": sites,
		"key": key.ID, "limit": strconv.Itoa(limit)}), auditSQL)
	if err != nil {
		s.dbUnavailable(w, "querying audit log", err)
		return
	}
	defer rows.Close()
	type entry struct {
		TS     time.Time `json:"ts"`
		Key    string    `json:"key"`
		Role   string    `json:"role"`
		Method string    `json:"method"`
		Route  string    `json:"route"`
		Site   string    `json:"site"`
		Status uint16    `json:"status"`
		Rows   uint64    `json:"rows"`
		Remote string    `json:"remote"`
	}
	out := []entry{}
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.TS, &e.Key, &e.Role, &e.Method, &e.Route, &e.Site, &e.Status, &e.Rows, &e.Remote); err != nil {
			writeError(w, http.StatusInternalServerError, "database: cannot read result")
			return
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
		return
	}
	setRows(w, len(out))
	writeJSON(w, http.StatusOK, map[string]any{"entries": out, "from": from, "to": to})
}

func quoteAll(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != tenant.AllSites {
			out = append(out, "'"+id+"'")
		}
	}
	return out
}
