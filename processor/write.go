package processor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// write inserts the batch's kept rows and dropped-hit records, leaving out
// what an earlier delivery of the same hits already wrote.
func (p *Processor) write(ctx context.Context, b *batch) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// Every batch asks which of its hits are already written, kept or
	// dropped: a redelivery after a crash between insert and ack, a message
	// JetStream hands out again after its own crash (acks are persisted on
	// a timer), or a client's retry that JetStream no longer recognised —
	// even if the hit is judged differently this time (new IP data, a PTR
	// answer, a site setting). A hit id twice in one batch is written once.
	refs := make([]hitRef, 0, len(b.rows)+len(b.dropped))
	for _, r := range b.rows {
		refs = append(refs, hitRef{site: r.site, id: r.hitID, ts: r.ts})
	}
	for _, d := range b.dropped {
		refs = append(refs, hitRef{site: d.site, id: d.id, ts: d.ts})
	}
	rows, dropped := b.rows, b.dropped
	if b.checked {
		// A retry. If ClickHouse died after storing this batch's hits but
		// before the materialized views had their share, the hits must be
		// sent again as they were, under the same token: ClickHouse drops
		// them as a duplicate block and still gives the views the block
		// once. So a hit found stored with this batch's own stream
		// sequence stays in; one stored from another message meanwhile (a
		// client's retry of it, taken by another processor while this
		// batch waited) is left out. Dropped-hit records carry no
		// sequence; they are sent again as they were.
		rows, dropped = b.unwritten, b.unrecorded
		if len(rows) > 0 {
			refs = refs[:0]
			for _, r := range rows {
				refs = append(refs, hitRef{site: r.site, id: r.hitID, ts: r.ts})
			}
			stored, err := p.writtenHits(ctx, refs)
			if err != nil {
				return err
			}
			rows = slices.DeleteFunc(slices.Clone(rows), func(r row) bool {
				seqs, ok := stored[hitKey(r.site, r.hitID)]
				return ok && !slices.Contains(seqs, r.seq)
			})
			p.metrics.duplicatesSkipped.Add(float64(len(b.unwritten) - len(rows)))
		}
	} else if len(refs) > 0 {
		written, err := p.writtenHits(ctx, refs)
		if err != nil {
			return err
		}
		seen := make(map[uint64]bool, len(refs))
		skip := func(site, id string) bool {
			k := hitKey(site, id)
			if _, ok := written[k]; ok || seen[k] {
				return true
			}
			seen[k] = true
			return false
		}
		rows = slices.DeleteFunc(slices.Clone(rows), func(r row) bool { return skip(r.site, r.hitID) })
		dropped = slices.DeleteFunc(slices.Clone(dropped), func(d droppedHit) bool { return skip(d.site, d.id) })
		p.metrics.duplicatesSkipped.Add(float64(len(b.rows) + len(b.dropped) - len(rows) - len(dropped)))
		b.checked, b.unwritten, b.unrecorded = true, rows, dropped
	}
	if len(rows) > 0 {
		start := time.Now()
		if err := p.insertHits(ctx, b.token, rows); err != nil {
			return err
		}
		p.metrics.insertSeconds.Observe(time.Since(start).Seconds())
		p.metrics.inserted.Add(float64(len(rows)))
	}
	if len(dropped) > 0 {
		if err := p.insertDropped(ctx, b.token, dropped); err != nil {
			return err
		}
		for _, d := range dropped {
			p.metrics.filtered.WithLabelValues(d.reason).Inc()
		}
	}
	return nil
}

func insertContext(ctx context.Context, token string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": token,
		// The company aggregates must not count a deduplicated block either.
		"deduplicate_blocks_in_dependent_materialized_views": 1,
	}))
}

func (p *Processor) insertHits(ctx context.Context, token string, rows []row) error {
	batch, err := p.ch.PrepareBatch(insertContext(ctx, "hits-"+token), `INSERT INTO hits
		(site_id, ts, received_at, hit_id, type, url, path, referrer, source, title,
		 visitor_id, visit_id, visit_start, new_visit, consent, engaged_ms, company_id, company_name, company_domain, company_industry, company_size,
		 asn, as_org, network_type, country, city, lang, stream_seq, retention_days)`)
	if err != nil {
		return fmt.Errorf("preparing hits insert: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		if err := batch.Append(r.site, r.ts, r.received, r.hitID, r.typ, r.url, r.path, r.referrer, r.source, r.title,
			r.visitorID, r.visitID, r.visitStart, r.newVisit, r.consent, r.engagedMS, r.companyID, r.companyName, r.companyDomain, r.industry, r.size,
			r.asn, r.asOrg, r.networkType, r.country, r.city, r.lang, r.seq, r.retentionDays); err != nil {
			batch.Abort()
			return fmt.Errorf("appending hit row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d hits: %w", len(rows), err)
	}
	return nil
}

// insertDropped records dropped hits; the filter ledger counts them through
// its materialized view, in the same insert.
func (p *Processor) insertDropped(ctx context.Context, token string, dropped []droppedHit) error {
	batch, err := p.ch.PrepareBatch(insertContext(ctx, "dropped-"+token), "INSERT INTO dropped_hits (site_id, ts, reason, hit_key)")
	if err != nil {
		return fmt.Errorf("preparing dropped-hit insert: %w", err)
	}
	for _, d := range dropped {
		if err := batch.Append(d.site, d.ts, d.reason, d.key); err != nil {
			batch.Abort()
			return fmt.Errorf("appending dropped hit: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d dropped hits: %w", len(dropped), err)
	}
	return nil
}

// hitRef identifies a hit for the already-written check.
type hitRef struct {
	site, id string
	ts       time.Time
}

// retryHorizon is how long after a hit a retry of it (same id, with no
// client timestamp) is still recognised as already written.
const retryHorizon = 24 * time.Hour

// writtenHits returns the keys (hitKey) of the hits already stored in hits,
// with the stream sequences of the messages they were stored from, or
// recorded in dropped_hits (sequence 0: the record has none). The time range prunes the search to a few
// daily partitions; the bloom filter index on hit_id (hits) and the
// primary key (dropped_hits) do the rest. A retried hit without a client
// timestamp gets a new one at the collector, so the range reaches back by
// the retry horizon.
func (p *Processor) writtenHits(ctx context.Context, refs []hitRef) (map[uint64][]uint64, error) {
	ids := make([]string, 0, len(refs))
	keys := make([]uint64, 0, len(refs))
	sites := map[string]bool{}
	from, to := refs[0].ts, refs[0].ts
	for _, r := range refs {
		ids = append(ids, r.id)
		keys = append(keys, hitKey(r.site, r.id))
		sites[r.site] = true
		if r.ts.Before(from) {
			from = r.ts
		}
		if r.ts.After(to) {
			to = r.ts
		}
	}
	siteList := make([]string, 0, len(sites))
	for s := range sites {
		siteList = append(siteList, s)
	}
	since, until := from.Add(-retryHorizon).UnixMilli(), to.UnixMilli()
	written := map[uint64][]uint64{}
	ctx = listQuery(ctx)
	res, err := p.ch.Query(ctx, `SELECT site_id, hit_id, stream_seq FROM hits
		WHERE site_id IN ? AND ts BETWEEN fromUnixTimestamp64Milli(?) AND fromUnixTimestamp64Milli(?) AND hit_id IN ?`,
		siteList, since, until, ids)
	if err != nil {
		return nil, fmt.Errorf("checking stored hits: %w", err)
	}
	for res.Next() {
		var site, id string
		var seq uint64
		if err := res.Scan(&site, &id, &seq); err != nil {
			res.Close()
			return nil, fmt.Errorf("checking stored hits: %w", err)
		}
		k := hitKey(site, id)
		written[k] = append(written[k], seq)
	}
	res.Close()
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("checking stored hits: %w", err)
	}
	res, err = p.ch.Query(ctx, `SELECT hit_key FROM dropped_hits
		WHERE site_id IN ? AND ts >= fromUnixTimestamp64Milli(?) AND hit_key IN ?`, siteList, since, keys)
	if err != nil {
		return nil, fmt.Errorf("checking recorded dropped hits: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var k uint64
		if err := res.Scan(&k); err != nil {
			return nil, fmt.Errorf("checking recorded dropped hits: %w", err)
		}
		written[k] = append(written[k], 0)
	}
	return written, res.Err()
}

// listQuery allows a query text as long as the lists of a whole batch
// make it: the driver writes a bound slice into the query as literals, and
// 5,000 hit ids or keys pass ClickHouse's default max_query_size (256 KiB),
// which would stop a batch for good.
func listQuery(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": 64 << 20}))
}
