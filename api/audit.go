package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/store"
)

// auditEntry is one API request as the audit log keeps it.
type auditEntry = store.AuditEntry

// auditLog writes entries in the background in batches, so a request never
// waits for the audit insert; on shutdown it writes what it holds.
type auditLog struct {
	db      *store.DB
	log     *slog.Logger
	entries chan auditEntry
	dropped prometheus.Counter
	done    chan struct{}
	once    sync.Once
}

func newAuditLog(db *store.DB, reg prometheus.Registerer, log *slog.Logger) *auditLog {
	a := &auditLog{db: db, log: log, entries: make(chan auditEntry, 10000), done: make(chan struct{}),
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
		a.log.Error("audit log full: entry dropped", "route", e.Route, "key", e.KeyID)
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
	return a.db.InsertAudit(ctx, entries)
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
	all := key.Account == "" && key.AllSites()
	var ids []string
	for _, site := range s.tenants.SitesOf(key) {
		if site.ID != tenant.AllSites {
			ids = append(ids, site.ID)
		}
	}
	out, err := s.db.AuditEntries(r.Context(), from, to, all, ids, key.ID, limit)
	if err != nil {
		s.dbUnavailable(w, "querying audit log", err)
		return
	}
	setRows(w, len(out))
	writeJSON(w, http.StatusOK, map[string]any{"entries": out, "from": from, "to": to})
}
