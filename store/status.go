package store

import (
	"context"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// RecentHit is one of a site's latest hits as the tracker status shows it:
// kept (with what leadpipe made of it) or dropped (with the reason, which
// is all that is kept of a dropped hit). Nothing identifies the visitor.
type RecentHit struct {
	TS          time.Time `json:"ts"`
	Kept        bool      `json:"kept"`
	Reason      string    `json:"reason,omitempty"` // why it was dropped
	Path        string    `json:"path,omitempty"`
	Company     string    `json:"company,omitempty"`
	NetworkType string    `json:"network_type,omitempty"`
	Country     string    `json:"country,omitempty"`
}

// recentHitsSQL reads the latest stored and the latest dropped hits of a
// site of the last day (dropped ones are kept two days).
const recentHitsSQL = `
SELECT ts, kept, reason, path, company, network_type, country FROM (
    SELECT ts, toUInt8(1) AS kept, '' AS reason, path, company_name AS company,
           toString(network_type) AS network_type, toString(country) AS country
    FROM hits
    WHERE site_id = {site:String} AND ts >= now64(3) - INTERVAL 1 DAY
    ORDER BY ts DESC
    LIMIT {limit:UInt32}
    UNION ALL
    SELECT ts, toUInt8(0) AS kept, toString(reason) AS reason, '' AS path, '' AS company, '' AS network_type, '' AS country
    FROM dropped_hits
    WHERE site_id = {site:String} AND ts >= now64(3) - INTERVAL 1 DAY
    ORDER BY ts DESC
    LIMIT {limit:UInt32})
ORDER BY ts DESC
LIMIT {limit:UInt32}`

// RecentHits reads a site's latest limit hits of the last day, stored or
// dropped, newest first.
func (db *DB) RecentHits(ctx context.Context, site string, limit int) ([]RecentHit, error) {
	ctx = params(ctx, clickhouse.Parameters{"site": site, "limit": strconv.Itoa(limit)})
	return readAll(ctx, db.conn, recentHitsSQL, func(rows driver.Rows) (RecentHit, error) {
		var h RecentHit
		var kept uint8
		err := rows.Scan(&h.TS, &kept, &h.Reason, &h.Path, &h.Company, &h.NetworkType, &h.Country)
		h.Kept, h.TS = kept == 1, h.TS.UTC()
		return h, err
	})
}
