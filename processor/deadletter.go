package processor

import (
	"context"
	"errors"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// deadHit is a hit that can never be processed, with why, and the
// message that carried it.
type deadHit struct {
	msg    jetstream.Msg
	raw    []byte // the encoded hit
	reason string
}

// deadLetter sets a hit that can never be processed aside in the
// dead-letter stream, with the reason (the message that carried it is then
// acknowledged with the batch). It reports false if the dead-letter publish
// failed: the message is then left unacknowledged and comes back later, so
// nothing is dropped silently.
func (p *Processor) deadLetter(d deadHit) bool {
	dl := nats.NewMsg(bus.DeadLetterSubject(d.msg.Subject()))
	dl.Data = d.raw
	dl.Header.Set(bus.DeadLetterReasonHeader, d.reason)
	dl.Header.Set(bus.DeadLetterSubjectHeader, d.msg.Subject())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.js.PublishMsg(ctx, dl); err != nil {
		p.log.Error("setting a hit aside in the dead-letter stream", "err", err)
		return false
	}
	p.metrics.deadLetters.Inc()
	return true
}

// refusedAttempts is how many times a batch is written whole before the
// rows ClickHouse refuses are looked for.
const refusedAttempts = 3

// refusedData reports whether ClickHouse refused an insert for what it
// holds (a value it cannot parse or store, a violated constraint) rather
// than for being unavailable or busy: retrying such a batch as it is can
// never succeed.
func refusedData(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	switch ex.Code {
	case 6, 27, 38, 41, 53, 69, 70, 72, 131, 321, 349, 469:
		// CANNOT_PARSE_TEXT, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
		// CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, TYPE_MISMATCH,
		// ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER,
		// TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
		// CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, VIOLATED_CONSTRAINT
		return true
	}
	return false
}

// isolate writes b in halves, and those in halves, until every part is
// written or holds a single hit that ClickHouse refuses; those are recorded
// in b.refused. Each part has its own deduplication token derived from
// b's, and the already-written check runs before each, so isolating again
// after a failure writes nothing twice. At most about 2·log2(n) inserts
// per refused hit.
func (p *Processor) isolate(ctx context.Context, b *batch) error {
	err := p.write(ctx, b)
	if err == nil || !refusedData(err) {
		return err
	}
	if len(b.rows)+len(b.dropped) == 1 {
		d := deadHit{reason: "refused by ClickHouse: " + err.Error()}
		if len(b.rows) == 1 {
			d.msg, d.raw = b.rows[0].msg, b.rows[0].raw
		} else {
			d.msg, d.raw = b.dropped[0].msg, b.dropped[0].raw
		}
		b.refused = append(b.refused, d)
		return nil
	}
	h := (len(b.rows) + len(b.dropped)) / 2
	left, right := &batch{token: b.token + "a"}, &batch{token: b.token + "b"}
	if h <= len(b.rows) {
		left.rows, right.rows, right.dropped = b.rows[:h], b.rows[h:], b.dropped
	} else {
		left.rows, left.dropped, right.dropped = b.rows, b.dropped[:h-len(b.rows)], b.dropped[h-len(b.rows):]
	}
	for _, part := range []*batch{left, right} {
		if err := p.isolate(ctx, part); err != nil {
			return err
		}
		b.refused = append(b.refused, part.refused...)
	}
	return nil
}
