// Package session is the session core shared by the daemon (tunnel/) and the
// embeddable library (securesession/): everything about one peer's sessions
// that is not I/O.
//
// A Peer is one remote peer as seen from a Host (this side's identity): the
// handshake in progress, the previous/current/next keypairs, the timers that
// decide when to (re)handshake and when to send keepalives, the counters and
// the last problem shown to the operator. It sends and receives nothing
// itself: methods take the bytes that arrived and return the bytes to send
// and what the holder must do (send a keepalive, flush what waited for a
// key, drop what waited because the handshake gave up). Clocks come in as
// arguments, so every rule is tested without sleeping.
//
// The holder owns transport concerns: endpoints and roaming, queues of
// packets waiting for a key, routing, DoS gates in front of the responder
// (cookies, rate limits), counters of dropped packets. tunnel.Peer holds a
// *Peer next to its endpoint and queues; securesession.Session holds one for
// its single remote peer. This package never imports either.
//
// Receiver indices (the 32-bit numbers in every packet that find its key
// before any cryptography) belong to the holder's lookup table; a Peer
// reserves, registers and releases them through the Registry it was given.
//
// # Concurrency and lock order
//
// A Peer is safe for concurrent use. Peer.mu guards the cold state (timers,
// the pending initiation, counters, the last problem) and is never held
// during public-key work: handshake messages are built and consumed first,
// then installed under the lock, so a slow or forged handshake cannot stall
// the data path that stamps the timers. The keypair slots have their own
// lock (rekey.Keypairs) and are read without Peer.mu on the packet path.
//
// Lock order: Peer.mu, then rekey.Keypairs' lock, then the Registry's own
// lock. A Registry must not call back into the Peer. The cookie generator's
// lock comes after Peer.mu too (Initiate makes a message's MACs under it).
package session
