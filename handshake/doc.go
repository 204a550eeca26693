// Package handshake is stunnel's authenticated key agreement: bytes in,
// bytes and session keys out. It knows nothing of sockets or TUN devices.
//
// Two messages (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s through flynn/noise)
// give both sides a pair of data keys, a transcript-bound session ID and a
// negotiated cipher; the initiator proves the key of the peer ID it claims,
// and the responder finds that key through a PeerLookup. mac1/mac2, cookie
// replies, a per-source token bucket and a per-peer timestamp and rate limit
// defend the responder against floods. docs/PROTOCOL.md is the wire format,
// byte by byte; constants.go holds every wire constant.
//
// Initiator:
//
//	in, _ := handshake.NewInitiation(cfg, peerInfo, localIndex)
//	msg := in.Message(); cookieGen.AddMACs(msg); send(msg)
//	// on a cookie reply: cookieGen.ConsumeReply(reply), then resend through AddMACs
//	// on a response (routed by PeekResponseReceiver): sess, err := in.ConsumeResponse(resp)
//
// Responder: see the receive path in the Responder documentation.
package handshake
