package spool

// SetMaxRecords changes the bound on pending records (see
// Options.MaxRecords: 0 means DefaultMaxRecords, negative unbounded). A
// lower bound drops the oldest pending records at once, counted in
// Stats.Dropped.
func (s *Spool) SetMaxRecords(n int) {
	if n == 0 {
		n = DefaultMaxRecords
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.MaxRecords = n
	if !s.closed {
		s.enforceMax()
		s.stats.Pending = s.next - s.head
	}
}

// enforceMax drops the oldest pending records over MaxRecords. mu held.
func (s *Spool) enforceMax() {
	if s.opts.MaxRecords < 0 {
		return
	}
	if pending := s.next - s.head; pending > uint64(s.opts.MaxRecords) {
		drop := pending - uint64(s.opts.MaxRecords)
		s.stats.Dropped += drop
		s.head += drop
		s.pos, s.peekEnd = nil, nil
		s.headDirty = true
		s.removeAcked()
	}
}
