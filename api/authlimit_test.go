package api

import "testing"

func TestAuthLimiterPerAddress(t *testing.T) {
	t.Parallel()
	l := newAuthLimiter()
	for range authBurst {
		if l.blocked("192.0.2.1") {
			t.Fatal("blocked before using up the allowance")
		}
		l.failed("192.0.2.1")
	}
	if !l.blocked("192.0.2.1") {
		t.Error("not blocked after the allowance of failures")
	}
	if l.blocked("192.0.2.2") {
		t.Error("another address is blocked too")
	}
}
