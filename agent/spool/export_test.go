package spool

// Unsynced returns how many appended records are not yet known to be on
// disk (0 once a Sync covering them has returned).
func (s *Spool) Unsynced() uint64 {
	s.mu.Lock()
	next := s.next
	s.mu.Unlock()
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced >= next {
		return 0
	}
	return next - s.synced
}
