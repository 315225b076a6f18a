package xta

// MaxCommitters is how many group transactions run at once.
const MaxCommitters = maxCommitters

// Waiting returns how many accepted messages wait for a committer.
func Waiting(s *Server) int {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	return len(s.commits.queue)
}
