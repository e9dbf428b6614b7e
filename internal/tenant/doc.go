// Package tenant holds sites and API keys: who may send hits for which site,
// and who may read which site's data.
//
// They live in JetStream key-value buckets, so every collector, processor and
// query process sees a change within milliseconds; each process keeps a
// snapshot fed by a watch, so the hot path (is this site known? is this key
// valid?) is a lock-free map read. API keys are stored only as SHA-256 hashes
// of their secret part: keys are 160 random bits, so a fast hash suffices and
// a stolen bucket reveals no usable key.
//
// It imports internal/bus alone.
package tenant
