package api

import (
	"net/http"
	"sync"

	"golang.org/x/time/rate"
)

// authLimiter slows down key guessing: each client address may fail to
// authenticate authBurst times at once and authFailureRate times a second
// after that; beyond it, every attempt from that address — a valid key's
// too — gets 429 until its allowance refills. Memory stays bounded.
type authLimiter struct {
	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

const (
	authFailureRate = rate.Limit(10.0 / 60) // ten a minute
	authBurst       = 20
	authMaxTracked  = 100_000
	authRetryAfter  = "60"
)

func newAuthLimiter() *authLimiter { return &authLimiter{clients: map[string]*rate.Limiter{}} }

// blocked reports whether the address has used up its failed attempts.
func (l *authLimiter) blocked(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.clients[ip]
	return lim != nil && lim.Tokens() < 1
}

// failed counts a failed attempt from the address.
func (l *authLimiter) failed(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.clients[ip]
	if lim == nil {
		if len(l.clients) >= authMaxTracked {
			l.forgetRefilled()
		}
		lim = rate.NewLimiter(authFailureRate, authBurst)
		l.clients[ip] = lim
	}
	lim.Allow()
}

// forgetRefilled drops the addresses whose allowance is full again (they
// are as if never seen); if that frees nothing, it starts over.
func (l *authLimiter) forgetRefilled() {
	for ip, lim := range l.clients {
		if lim.Tokens() >= authBurst {
			delete(l.clients, ip)
		}
	}
	if len(l.clients) >= authMaxTracked {
		clear(l.clients)
	}
}

// refuse answers 429 to an address that failed too often.
func refuseAuth(w http.ResponseWriter) {
	w.Header().Set("Retry-After", authRetryAfter)
	writeError(w, http.StatusTooManyRequests, "authorization: too many failed attempts from this address; retry in a minute")
}
