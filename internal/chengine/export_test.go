package chengine

// EngineNativeAddr is where a managed engine itself listens for native
// clients (behind the relay for chdb).
func (s *Server) EngineNativeAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.engineNative
}
