package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/store"
)

// BenchmarkAppendHit measures what the processor's insert costs on the
// client per hit before the block is sent: column by column (what
// InsertHits does), against appending row by row by the ch tags
// (AppendStruct) or positionally.
//
//	CI=true go test ./store -run '^$' -bench AppendHit -benchmem
func BenchmarkAppendHit(b *testing.B) {
	conn, _ := testenv.Database(b)
	now := time.Now()
	h := store.Hit{SiteID: "s", TS: now, ReceivedAt: now, HitID: "0123456789abcdef", Type: "pageview",
		URL: "https://example.com/pricing?x=1", Path: "/pricing", Referrer: "https://www.google.com/", Source: "search",
		Title: "Pricing", VisitorID: 42, VisitID: 7, VisitStart: now, NewVisit: 1, Consent: "granted", EngagedMS: 1200,
		CompanyID: "c0123456789", CompanyName: "SAP SE", CompanyDomain: "sap.com", ASN: 212794, ASOrg: "SAP SE",
		NetworkType: "business", Country: "DE", City: "Walldorf", Lang: "de", StreamSeq: 99, RetentionDays: 180}
	const cols = `INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, referrer, source, title,
		visitor_id, visit_id, visit_start, new_visit, consent, engaged_ms, company_id, company_name, company_domain, company_industry, company_size,
		asn, as_org, network_type, country, city, lang, stream_seq, retention_days)`
	const rows = 5000
	b.Run("columns", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i += rows {
			n := min(rows, b.N-i)
			batch, err := conn.PrepareBatch(context.Background(), store.InsertHitsSQL)
			if err != nil {
				b.Fatal(err)
			}
			err = store.AppendHits(batch, n, func(yield func(*store.Hit) bool) {
				for range n {
					if !yield(&h) {
						return
					}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			batch.Abort()
		}
	})
	for _, mode := range []string{"struct", "positional"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i += rows {
				batch, err := conn.PrepareBatch(context.Background(), cols)
				if err != nil {
					b.Fatal(err)
				}
				for range min(rows, b.N-i) {
					if mode == "struct" {
						err = batch.AppendStruct(&h)
					} else {
						err = batch.Append(h.SiteID, h.TS, h.ReceivedAt, h.HitID, h.Type, h.URL, h.Path, h.Referrer, h.Source, h.Title,
							h.VisitorID, h.VisitID, h.VisitStart, h.NewVisit, h.Consent, h.EngagedMS, h.CompanyID, h.CompanyName, h.CompanyDomain,
							h.CompanyIndustry, h.CompanySize, h.ASN, h.ASOrg, h.NetworkType, h.Country, h.City, h.Lang, h.StreamSeq, h.RetentionDays)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				batch.Abort()
			}
		})
	}
}
