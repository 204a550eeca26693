package rekey

// Restore puts keypairs rebuilt after a restart (ImportKeypair) back in
// their slots. Only for a Keypairs that holds none yet.
func (s *Keypairs) Restore(previous, current, next *Keypair) {
	s.mu.Lock()
	s.previous, s.current, s.next = previous, current, next
	s.mu.Unlock()
}
