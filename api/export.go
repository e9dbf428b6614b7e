package api

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/store"
)

// exportRow is one company on one day.
type exportRow = store.ExportRow

var exportColumns = []string{"day", "company_id", "company_name", "company_domain", "network_type", "country",
	"visits", "pageviews", "visitors", "engaged_seconds", "first_seen", "last_seen"}

// export streams the site's company-day rows as CSV, NDJSON or an Arrow IPC
// stream, row by row (Arrow: in record batches of 4,096), never holding the
// whole result in memory.
func (s *Server) export(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "csv"
	}
	if format != "csv" && format != "ndjson" && format != "arrow" {
		writeError(w, http.StatusBadRequest, "format: must be csv, ndjson or arrow")
		return
	}
	candidates, err := boolParam(r.URL.Query(), "candidates")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	next, done, err := s.db.ExportRows(r.Context(), site.ID, from, to, candidates)
	if err != nil {
		s.dbUnavailable(w, "querying export", err)
		return
	}
	defer done()
	name := "leadpipe-" + site.ID + "-" + from + "-" + to
	w.Header().Set("Cache-Control", "no-store")
	var n int
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		n, err = writeCSV(w, next)
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.ndjson"`)
		n, err = writeNDJSON(w, next)
	case "arrow":
		w.Header().Set("Content-Type", "application/vnd.apache.arrow.stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.arrows"`)
		n, err = writeArrow(w, next)
	}
	setRows(w, n)
	if err != nil {
		// The status is sent: abort the response so the client sees a broken
		// transfer, not an export that looks complete.
		s.log.Error("streaming export", "format", format, "rows", n, "err", err)
		panic(http.ErrAbortHandler)
	}
}

func writeCSV(w http.ResponseWriter, next func(*exportRow) (bool, error)) (int, error) {
	cw := csv.NewWriter(w)
	cw.Write(exportColumns)
	n := 0
	var row exportRow
	for {
		ok, err := next(&row)
		if !ok {
			cw.Flush()
			return n, err
		}
		cw.Write([]string{row.Day, row.CompanyID, row.CompanyName, row.CompanyDomain, row.NetworkType, row.Country,
			strconv.FormatUint(row.Visits, 10), strconv.FormatUint(row.Pageviews, 10), strconv.FormatUint(row.Visitors, 10),
			strconv.FormatUint(row.EngagedSeconds, 10), row.FirstSeen, row.LastSeen})
		n++
	}
}

func writeNDJSON(w http.ResponseWriter, next func(*exportRow) (bool, error)) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	n := 0
	var row exportRow
	for {
		ok, err := next(&row)
		if !ok {
			bw.Flush()
			return n, err
		}
		if err := enc.Encode(&row); err != nil {
			return n, err
		}
		n++
	}
}

// ExportSchema is the Arrow schema of an export.
var ExportSchema = arrow.NewSchema([]arrow.Field{
	{Name: "day", Type: arrow.FixedWidthTypes.Date32},
	{Name: "company_id", Type: arrow.BinaryTypes.String},
	{Name: "company_name", Type: arrow.BinaryTypes.String},
	{Name: "company_domain", Type: arrow.BinaryTypes.String},
	{Name: "network_type", Type: arrow.BinaryTypes.String},
	{Name: "country", Type: arrow.BinaryTypes.String},
	{Name: "visits", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "pageviews", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "visitors", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "engaged_seconds", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "first_seen", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
	{Name: "last_seen", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
}, nil)

const arrowBatchRows = 4096

func writeArrow(w http.ResponseWriter, next func(*exportRow) (bool, error)) (int, error) {
	mem := memory.NewGoAllocator()
	b := array.NewRecordBuilder(mem, ExportSchema)
	defer b.Release()
	iw := ipc.NewWriter(w, ipc.WithSchema(ExportSchema), ipc.WithAllocator(mem))
	flush := func() error {
		rec := b.NewRecordBatch()
		defer rec.Release()
		return iw.Write(rec)
	}
	n, inBatch := 0, 0
	var row exportRow
	for {
		ok, err := next(&row)
		if !ok {
			if err != nil {
				return n, err // no end-of-stream marker: the stream is visibly cut
			}
			if inBatch > 0 {
				if err := flush(); err != nil {
					return n, err
				}
			}
			return n, iw.Close()
		}
		day, _ := time.Parse(time.DateOnly, row.Day)
		first, _ := time.Parse(time.RFC3339Nano, row.FirstSeen)
		last, _ := time.Parse(time.RFC3339Nano, row.LastSeen)
		b.Field(0).(*array.Date32Builder).Append(arrow.Date32FromTime(day))
		for i, v := range []string{row.CompanyID, row.CompanyName, row.CompanyDomain, row.NetworkType, row.Country} {
			b.Field(1 + i).(*array.StringBuilder).Append(v)
		}
		for i, v := range []uint64{row.Visits, row.Pageviews, row.Visitors, row.EngagedSeconds} {
			b.Field(6 + i).(*array.Uint64Builder).Append(v)
		}
		b.Field(10).(*array.TimestampBuilder).Append(arrow.Timestamp(first.UnixMilli()))
		b.Field(11).(*array.TimestampBuilder).Append(arrow.Timestamp(last.UnixMilli()))
		n++
		if inBatch++; inBatch == arrowBatchRows {
			if err := flush(); err != nil {
				return n, err
			}
			inBatch = 0
		}
	}
}
