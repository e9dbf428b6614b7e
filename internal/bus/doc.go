// Package bus is leadpipe's message bus: NATS JetStream, embedded in the
// process for a single machine or external for a cluster, with the streams
// and key-value buckets every stage relies on, and the hit message that
// travels from the collector to the processors.
//
// Subjects carry the site (hits.<site>), so processors can later be
// partitioned by site without changing publishers.
//
// It imports nothing of leadpipe's.
package bus
