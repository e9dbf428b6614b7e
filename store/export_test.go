package store

// AppendHits and InsertHitsSQL let the benchmarks time building an insert
// block without sending it.
var (
	AppendHits    = appendHits
	InsertHitsSQL = insertHits
)
