package chengine

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// chDB 26.7 aborts (std::terminate on an uncaught "Connection reset by
// peer") when a client resets a connection to its native port: a client
// killed with unread data in its socket, or any client that closes with
// SO_LINGER 0, takes the whole engine down.
// So clients of a chdb engine reach it through a relay in the managing
// process, which never passes a reset on: when the client side ends in
// any way, the relay half-closes the engine's side (a FIN, which the
// engine handles as a client that left) and reads what the engine still
// sends until the engine closes. TestClientResetDoesNotCrashEngine
// reproduces the abort without the relay.
//
// The relay listens only while the engine serves: a stopped or crashed
// engine refuses connections, as a server would, and the relay listens
// again on the same address when the engine is back.
type relay struct {
	addr   string        // where clients connect; fixed at the first listen
	target func() string // the engine's own address, read per connection

	mu     sync.Mutex
	ln     net.Listener                  // nil while not listening
	conns  map[*net.TCPConn]*net.TCPConn // engine side → client side of open connections
	closed bool
	wg     sync.WaitGroup
}

// drainLimit bounds how long the relay reads what the engine still sends
// after its client left: the engine sees the half-close within its
// interactive delay (100 ms) and cancels the query.
const drainLimit = 10 * time.Minute

// newRelay relays clients of addr (a loopback host:port, port 0 for any
// free one, kept from then on) to target, once it listens.
func newRelay(addr string, target func() string) *relay {
	return &relay{addr: addr, target: target, conns: map[*net.TCPConn]*net.TCPConn{}}
}

// listen starts accepting on the relay's address; it does nothing if the
// relay listens already.
func (r *relay) listen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("relay closed")
	}
	if r.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("listening for ClickHouse clients on %s: %w", r.addr, err)
	}
	r.ln, r.addr = ln, ln.Addr().String()
	r.wg.Add(1)
	go r.serve(ln)
	return nil
}

// Addr is where clients connect.
func (r *relay) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// stopListening refuses new clients and hangs up the open connections.
func (r *relay) stopListening() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		_ = c.CloseWrite()
	}
}

func (r *relay) serve(ln net.Listener) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: let some close
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.handle(c.(*net.TCPConn))
		}()
	}
}

func (r *relay) handle(client *net.TCPConn) {
	up, err := net.DialTimeout("tcp", r.target(), 5*time.Second)
	if err != nil {
		// The engine went down: the client sees the connection end (a
		// FIN, once what it sent is read, rather than a reset).
		_ = client.CloseWrite()
		_ = client.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, client)
		client.Close()
		return
	}
	engine := up.(*net.TCPConn)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		engine.Close()
		client.Close()
		return
	}
	r.conns[engine] = client
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, engine)
		r.mu.Unlock()
	}()

	// Client to engine; however the client side ends, the engine gets a
	// FIN, never a reset.
	go func() {
		_, _ = io.Copy(engine, client)
		_ = engine.CloseWrite()
	}()
	// Engine to client, until the engine closes; if the client is gone,
	// what the engine still sends is read and dropped, so that the engine
	// never writes into a closed socket either.
	if _, err := io.Copy(client, engine); err != nil {
		_ = engine.SetReadDeadline(time.Now().Add(drainLimit))
		_, _ = io.Copy(io.Discard, engine)
	}
	client.Close()
	engine.Close()
}

// close stops listening, hangs up every connection and waits a moment
// for the engine to close them, then closes what is left.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stopListening()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	}
	r.mu.Lock()
	for engine, client := range r.conns {
		engine.Close()
		client.Close()
	}
	r.mu.Unlock()
	<-done
}
