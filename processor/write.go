package processor

import (
	"context"
	"iter"
	"slices"
	"time"

	"github.com/leadpipe/leadpipe/store"
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
	refs := make([]store.HitRef, 0, len(b.rows)+len(b.dropped))
	for _, r := range b.rows {
		refs = append(refs, store.HitRef{SiteID: r.SiteID, HitID: r.HitID, TS: r.TS})
	}
	for _, d := range b.dropped {
		refs = append(refs, store.HitRef{SiteID: d.SiteID, HitID: d.id, TS: d.TS})
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
				refs = append(refs, store.HitRef{SiteID: r.SiteID, HitID: r.HitID, TS: r.TS})
			}
			stored, err := p.db.StoredHits(ctx, refs)
			if err != nil {
				return err
			}
			rows = slices.DeleteFunc(slices.Clone(rows), func(r row) bool {
				seqs, ok := stored[store.HitKey(r.SiteID, r.HitID)]
				return ok && !slices.Contains(seqs, r.StreamSeq)
			})
			p.metrics.duplicatesSkipped.Add(float64(len(b.unwritten) - len(rows)))
		}
	} else if len(refs) > 0 {
		written, err := p.db.StoredHits(ctx, refs)
		if err != nil {
			return err
		}
		seen := make(map[uint64]bool, len(refs))
		skip := func(site, id string) bool {
			k := store.HitKey(site, id)
			if _, ok := written[k]; ok || seen[k] {
				return true
			}
			seen[k] = true
			return false
		}
		rows = slices.DeleteFunc(slices.Clone(rows), func(r row) bool { return skip(r.SiteID, r.HitID) })
		dropped = slices.DeleteFunc(slices.Clone(dropped), func(d droppedHit) bool { return skip(d.SiteID, d.id) })
		p.metrics.duplicatesSkipped.Add(float64(len(b.rows) + len(b.dropped) - len(rows) - len(dropped)))
		b.checked, b.unwritten, b.unrecorded = true, rows, dropped
	}
	if len(rows) > 0 {
		start := time.Now()
		if err := p.db.InsertHits(ctx, b.token, len(rows), hitsOf(rows)); err != nil {
			return err
		}
		p.metrics.insertSeconds.Observe(time.Since(start).Seconds())
		p.metrics.inserted.Add(float64(len(rows)))
	}
	if len(dropped) > 0 {
		records := make([]store.Filtered, len(dropped))
		for i, d := range dropped {
			records[i] = d.Filtered
		}
		if err := p.db.InsertFiltered(ctx, b.token, records); err != nil {
			return err
		}
		for _, d := range dropped {
			p.metrics.filtered.WithLabelValues(d.Reason).Inc()
		}
	}
	return nil
}

// hitsOf is the stored part of each row.
func hitsOf(rows []row) iter.Seq[*store.Hit] {
	return func(yield func(*store.Hit) bool) {
		for i := range rows {
			if !yield(&rows[i].Hit) {
				return
			}
		}
	}
}
