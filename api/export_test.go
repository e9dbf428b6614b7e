package api

import "context"

// SweepOnce runs one pass of the deleted-sites sweeper, for tests.
func (s *Server) SweepOnce(ctx context.Context) error { return s.sweepOnce(ctx) }
