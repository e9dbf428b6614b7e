package collector

import (
	"bytes"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// The publisher sends hits to JetStream from one goroutine. Hits that
// arrive while it is busy — because JetStream is slow to acknowledge and
// the pending publishes reached their bound — leave together, as one
// message per site holding them one per line (bus.SplitHits), at most
// maxGroupHits and maxGroupBytes. JetStream's cost is per message (a
// store write and, once processed, a removal), so under load it takes
// several times more hits; at a light load every hit is its own message,
// sent at once. Each hit is answered 202 only when its message is stored.
//
// A message of one hit carries the hit's id as its JetStream message id,
// so JetStream drops a retried hit it still remembers; a message of
// several carries none. Processors recognise retried hit ids either way
// (already-written check), so a retry is never counted twice.

const (
	maxGroupHits = 256
	// maxGroupBytes stays under the HITS stream's message size limit.
	maxGroupBytes = 60 << 10
)

// pubReq is a hit waiting to be published.
type pubReq struct {
	site, msgID string
	data        []byte
	done        chan pubResult // buffered: the publisher never blocks on it
}

type pubResult struct {
	err       error
	duplicate bool
}

type publisher struct {
	js      jetstream.JetStream
	reqs    chan *pubReq
	metrics *metrics
}

func newPublisher(js jetstream.JetStream, m *metrics) *publisher {
	p := &publisher{js: js, reqs: make(chan *pubReq, 4*maxGroupHits), metrics: m}
	go p.loop()
	return p
}

// publish queues a hit; its result arrives on the returned channel.
func (p *publisher) publish(site, msgID string, data []byte) <-chan pubResult {
	r := &pubReq{site: site, msgID: msgID, data: data, done: make(chan pubResult, 1)}
	p.reqs <- r
	return r.done
}

func (p *publisher) loop() {
	group := make([]*pubReq, 0, maxGroupHits)
	for r := range p.reqs {
		group = append(group[:0], r)
	more:
		for len(group) < maxGroupHits {
			select {
			case r := <-p.reqs:
				group = append(group, r)
			default:
				break more
			}
		}
		p.send(group)
	}
}

// send publishes a group as one message per site (and per maxGroupBytes).
func (p *publisher) send(group []*pubReq) {
	for len(group) > 0 {
		site := group[0].site
		var msg []*pubReq
		size := 0
		rest := group[:0]
		for _, r := range group {
			if r.site == site && size+len(r.data)+1 <= maxGroupBytes {
				msg = append(msg, r)
				size += len(r.data) + 1
			} else {
				rest = append(rest, r)
			}
		}
		if len(msg) == 0 { // a single hit larger than the bound: alone
			msg, rest = []*pubReq{group[0]}, group[1:]
		}
		p.publishOne(site, msg)
		group = rest
	}
}

func (p *publisher) publishOne(site string, reqs []*pubReq) {
	m := nats.NewMsg(bus.HitSubject(site))
	if len(reqs) == 1 {
		m.Data = reqs[0].data
		m.Header.Set(jetstream.MsgIDHeader, reqs[0].msgID)
	} else {
		var b bytes.Buffer
		for i, r := range reqs {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.Write(r.data)
		}
		m.Data = b.Bytes()
	}
	p.metrics.hitsPerMessage.Observe(float64(len(reqs)))
	fut, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream(bus.HitsStream))
	if err != nil {
		for _, r := range reqs {
			r.done <- pubResult{err: err}
		}
		return
	}
	// The acknowledgement is awaited apart, so the next group can go out.
	go func() {
		var res pubResult
		select {
		case ack := <-fut.Ok():
			res.duplicate = ack.Duplicate
		case err := <-fut.Err():
			res.err = err
		case <-time.After(bus.PublishAsyncTimeout):
			res.err = errors.New("no acknowledgement from JetStream")
		}
		for _, r := range reqs {
			r.done <- res
		}
	}()
}
