package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// VisitorHit is one hit in a visitor's data export.
type VisitorHit struct {
	TS             time.Time `json:"ts"`
	Type           string    `json:"type"`
	URL            string    `json:"url"`
	Title          string    `json:"title"`
	Referrer       string    `json:"referrer"`
	EngagedSeconds float64   `json:"engaged_seconds"`
	Consent        string    `json:"consent"`
	Company        string    `json:"company"`
	Country        string    `json:"country"`
	City           string    `json:"city,omitempty"`
	Lang           string    `json:"lang,omitempty"`
}

const visitorHitsSQL = `
SELECT ts, type, url, title, referrer, engaged_ms, consent, company_name, country, city, lang
FROM hits
WHERE site_id = {site:String} AND visitor_id = {visitor:UInt64}
ORDER BY ts`

// VisitorHits is every stored hit of a visitor of a site, oldest first: a
// data subject's access request.
func (db *DB) VisitorHits(ctx context.Context, site string, visitor uint64) ([]VisitorHit, error) {
	ctx = params(ctx, clickhouse.Parameters{"site": site, "visitor": strconv.FormatUint(visitor, 10)})
	return readAll(ctx, db.conn, visitorHitsSQL, func(rows driver.Rows) (VisitorHit, error) {
		var h VisitorHit
		var ms uint32
		err := rows.Scan(&h.TS, &h.Type, &h.URL, &h.Title, &h.Referrer, &ms, &h.Consent, &h.Company, &h.Country, &h.City, &h.Lang)
		h.EngagedSeconds = float64(ms) / 1000
		return h, err
	})
}

// DataRequest is one row of data_requests: a completed data subject
// request (access, erasure) or site erasure.
type DataRequest struct {
	ID          string    `ch:"id"`
	SiteID      string    `ch:"site_id"`
	Kind        string    `ch:"kind"`
	KeyID       string    `ch:"key_id"`
	RequestedAt time.Time `ch:"requested_at"`
	CompletedAt time.Time `ch:"completed_at"`
	Rows        uint64    `ch:"rows"`
}

var insertDataRequest = "INSERT INTO data_requests (" + columnsOf(DataRequest{}) + ")"

// RecordRequest writes a completed data request.
func (db *DB) RecordRequest(ctx context.Context, r DataRequest) error {
	b, err := db.conn.PrepareBatch(ctx, insertDataRequest)
	if err != nil {
		return err
	}
	if err := b.AppendStruct(&r); err != nil {
		b.Abort()
		return err
	}
	return b.Send()
}

// AuditEntry is one row of audit_log: an API request.
type AuditEntry struct {
	TS     time.Time `ch:"ts" json:"ts"`
	KeyID  string    `ch:"key_id" json:"key"`
	Role   string    `ch:"role" json:"role"`
	Method string    `ch:"method" json:"method"`
	Route  string    `ch:"route" json:"route"`
	SiteID string    `ch:"site_id" json:"site"`
	Status uint16    `ch:"status" json:"status"`
	Rows   uint64    `ch:"rows" json:"rows"`
	Remote string    `ch:"remote" json:"remote"` // the caller's address (an operator or a sales team's browser)
}

var insertAudit = "INSERT INTO audit_log (" + columnsOf(AuditEntry{}) + ")"

// InsertAudit writes audit entries as one block.
func (db *DB) InsertAudit(ctx context.Context, entries []AuditEntry) error {
	b, err := db.conn.PrepareBatch(ctx, insertAudit)
	if err != nil {
		return err
	}
	for i := range entries {
		if err := b.AppendStruct(&entries[i]); err != nil {
			b.Abort()
			return err
		}
	}
	return b.Send()
}

const auditSQL = `
SELECT ts, key_id, role, method, route, site_id, status, rows, remote
FROM audit_log
WHERE ts >= toDateTime64({from:Date}, 3, 'UTC') AND ts < toDateTime64({to:Date} + 1, 3, 'UTC')
  AND ({all:UInt8} = 1 OR has({sites:Array(String)}, site_id) OR key_id = {key:String})
ORDER BY ts DESC
LIMIT {limit:UInt32}`

// AuditEntries reads the newest audit entries of a date range, at most
// limit: every entry when all, else those of the sites and those made
// with the key.
func (db *DB) AuditEntries(ctx context.Context, from, to string, all bool, sites []string, key string, limit int) ([]AuditEntry, error) {
	// Site ids are [a-z2-7] (made by leadpipe), so the array literal needs
	// no escaping.
	quoted := make([]string, 0, len(sites))
	for _, id := range sites {
		quoted = append(quoted, "'"+id+"'")
	}
	allFlag := "0"
	if all {
		allFlag = "1"
	}
	ctx = params(ctx, clickhouse.Parameters{"from": from, "to": to, "all": allFlag, "sites": "[" + strings.Join(quoted, ",") + "]",
		"key": key, "limit": strconv.Itoa(limit)})
	return readAll(ctx, db.conn, auditSQL, func(rows driver.Rows) (e AuditEntry, err error) {
		return e, rows.Scan(&e.TS, &e.KeyID, &e.Role, &e.Method, &e.Route, &e.SiteID, &e.Status, &e.Rows, &e.Remote)
	})
}
