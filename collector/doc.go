// Package collector is the collector: the fasthttp server that serves the
// tracker script (GET /lf.js), takes page hits from it (POST /v1/hit) and
// from server-side senders (POST /v1/batch, authenticated by a site
// secret), validates them, finds the visitor IP, applies per-site rate
// limits, and publishes the hits to the HITS stream of JetStream. It answers
// 202 only after JetStream acknowledged the publish: 202 means durably
// queued.
//
// It imports internal/ only (bus, tenant, tlsfiles): never another stage,
// ipintel or store — the collector neither enriches nor stores.
package collector
