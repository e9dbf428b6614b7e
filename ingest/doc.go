// Package ingest is the collector: the fasthttp server that takes page hits
// from the tracker on customer websites, validates them, finds the visitor
// IP, and publishes them to the HITS stream of JetStream. It answers 202 only
// after JetStream acknowledged the publish, so a 202 means durably queued.
//
// It depends on internal/bus (the stream and the hit message) and
// internal/tenant (which sites exist); nothing downstream.
package ingest
