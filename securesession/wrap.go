package securesession

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/session"
)

const (
	headerLen = handshake.MessageDataHeaderLen
	tagLen    = handshake.TagSize
)

// Result is what one received message gave.
type Result struct {
	// Data is the application message it carried; nil for handshake
	// messages and keepalives. With UnwrapTo it aliases dst.
	Data []byte
	// Send are messages to send to the peer now, in order (a handshake
	// response, the confirmation of a new session, a retried initiation).
	// Each is newly allocated and owned by the caller.
	Send [][]byte
}

// Wrap seals one application message. It fails with ErrNotEstablished until
// a session exists (or while none is usable during a failed rekey).
func (s *Session) Wrap(data []byte) ([]byte, error) { return s.WrapTo(nil, data) }

// WrapTo is Wrap appending the sealed message to dst[:0]: with a dst of
// capacity len(data)+WrapOverhead it allocates nothing. dst's memory must
// not overlap data's, not even from the same start (cipher.AEAD.Seal's one
// exception): the header is written first, over what data still holds.
func (s *Session) WrapTo(dst, data []byte) ([]byte, error) {
	if !s.enter() {
		return nil, ErrSessionClosed
	}
	defer s.leave()
	// IP packets too: isIP looks at the version, not the size, and a data
	// message larger than a UDP datagram or a frame could never be sent.
	if len(data) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxMessage)
	}
	if s.cfg.Payload == PayloadIP && !isIP(data) {
		return nil, ErrNotIP
	}
	return s.seal(dst, data, sealApp)
}

// sealKind says what a data message carries.
type sealKind uint8

const (
	sealApp       sealKind = iota // application data (tagged in PayloadMessages mode)
	sealKeepalive                 // nothing
	sealControl                   // a session control message, as it is
)

// WrapOverhead is how many bytes Wrap adds to a message at most.
const WrapOverhead = headerLen + 1 + tagLen

func isIP(b []byte) bool {
	return len(b) >= 20 && b[0]>>4 == 4 || len(b) >= 40 && b[0]>>4 == 6
}

// seal builds a data message of the given kind.
func (s *Session) seal(dst, data []byte, kind sealKind) ([]byte, error) {
	p := s.currentPeer()
	if p == nil {
		return nil, ErrNotEstablished
	}
	now := s.now()
	kp := p.Current(now)
	if kp == nil {
		s.want(p, now)
		return nil, ErrNotEstablished
	}
	counter, ok := kp.NextNonce(now)
	if !ok {
		s.want(p, now)
		return nil, ErrNotEstablished
	}
	inner := len(data)
	tagged := kind == sealApp && s.cfg.Payload == PayloadMessages
	if tagged {
		inner++
	}
	out := dst[:0]
	if cap(out) < headerLen+inner+tagLen {
		out = make([]byte, 0, headerLen+inner+tagLen)
	}
	out = out[:headerLen+inner]
	out[0], out[1], out[2], out[3] = handshake.MessageTypeData, handshake.ProtocolVersion, 0, 0
	binary.LittleEndian.PutUint32(out[4:8], kp.RemoteIndex)
	binary.LittleEndian.PutUint64(out[8:16], counter)
	body := out[headerLen:]
	if tagged {
		body[0] = payloadTagMessage
		body = body[1:]
	}
	copy(body, data)
	s.sealMu.Lock()
	putNonce(&s.sealNonce, counter)
	out = kp.Send.Seal(out[:headerLen], s.sealNonce[:], out[headerLen:], nil)
	s.sealMu.Unlock()
	p.Sent(kind != sealKeepalive, now)
	if kp.NeedsRekeyOnSend(now) {
		s.want(p, now)
	}
	return out, nil
}

func putNonce(n *[12]byte, counter uint64) {
	n[0], n[1], n[2], n[3] = 0, 0, 0, 0
	binary.LittleEndian.PutUint64(n[4:], counter)
}

// want asks the core for keys; an initiation due now goes to the outbox.
func (s *Session) want(p *session.Peer, now time.Time) {
	s.act(p, p.WantHandshake(now), now)
}

// act carries out the core's actions: messages go to the outbox.
func (s *Session) act(p *session.Peer, act rekey.Action, now time.Time) {
	if act&rekey.ActSendInitiation != 0 {
		if msg, _, err := p.Initiate(now, p.ID()); err == nil {
			s.queue(msg)
		}
	}
	if act&rekey.ActSendKeepalive != 0 {
		if msg, err := s.seal(nil, nil, sealKeepalive); err == nil {
			s.queue(msg)
		}
	}
}

func (s *Session) queue(msg []byte) {
	s.mu.Lock()
	s.outbox = append(s.outbox, msg)
	s.mu.Unlock()
}

func (s *Session) drain() [][]byte {
	s.mu.Lock()
	out := s.outbox
	s.outbox = nil
	s.mu.Unlock()
	return out
}

// wantKeys asks for a session with the peer when none is usable, as Wrap
// does, and returns the messages due now (an initiation).
func (s *Session) wantKeys() [][]byte {
	if !s.enter() {
		return nil
	}
	defer s.leave()
	if p := s.currentPeer(); p != nil {
		if now := s.now(); p.Current(now) == nil {
			s.want(p, now)
		}
	}
	return s.drain()
}

// Tick runs the timers: it returns the messages due now (handshake retries,
// rekeys, keepalives). Call it at NextDeadline, or every second or so.
func (s *Session) Tick() [][]byte {
	if !s.enter() {
		return nil
	}
	defer s.leave()
	if p := s.currentPeer(); p != nil {
		now := s.now()
		s.act(p, p.Due(now), now)
	}
	return s.drain()
}

// NextDeadline is when Tick next has work (zero: nothing scheduled but key
// expiry; calling Tick once a second covers that).
func (s *Session) NextDeadline() time.Time {
	if p := s.currentPeer(); p != nil {
		return p.NextDeadline()
	}
	return time.Time{}
}

// Unwrap processes one received message. Data messages give Data;
// handshake messages give messages to send back. Errors say what was wrong
// and leave the session as it was.
func (s *Session) Unwrap(msg []byte) (Result, error) { return s.UnwrapTo(nil, msg) }

// UnwrapTo is Unwrap opening data into dst[:0]: with a dst of capacity
// len(msg) a data message allocates nothing. dst may share msg's memory
// (a receive loop's one buffer: UnwrapTo(buf, buf[:n])): the message is
// then opened in place, and overwritten.
func (s *Session) UnwrapTo(dst, msg []byte) (Result, error) {
	if !s.enter() {
		return Result{}, ErrSessionClosed
	}
	defer s.leave()
	typ, ok := handshake.MessageType(msg)
	if !ok {
		return Result{}, ErrMalformed
	}
	switch typ {
	case handshake.MessageTypeData:
		return s.unwrapData(dst, msg)
	case handshake.MessageTypeInitiation:
		return s.unwrapInitiation(msg)
	case handshake.MessageTypeResponse, handshake.MessageTypeResumptionResponse:
		return s.unwrapResponse(msg)
	case handshake.MessageTypeResumptionInitiation:
		return s.unwrapResumption(msg)
	case handshake.MessageTypeCookieReply:
		return s.unwrapCookieReply(msg)
	}
	return Result{}, fmt.Errorf("%w: unknown message type %d", ErrMalformed, typ)
}

func (s *Session) unwrapData(dst, msg []byte) (Result, error) {
	if len(msg) < headerLen+tagLen || msg[1] != handshake.ProtocolVersion || msg[2] != 0 || msg[3] != 0 {
		return Result{}, fmt.Errorf("%w: bad data header", ErrMalformed)
	}
	idx := binary.LittleEndian.Uint32(msg[4:8])
	counter := binary.LittleEndian.Uint64(msg[8:16])
	kp, ok := s.reg.Lookup(idx)
	if !ok || kp == nil {
		return Result{}, ErrUnknownIndex
	}
	// cipher.AEAD.Open panics when its output overlaps the ciphertext
	// other than exactly; a dst in msg's own buffer opens in place, and
	// the data moves to dst's start.
	ct := msg[headerLen:]
	need := len(ct) - tagLen
	inPlace := cap(dst) >= need && overlaps(dst[:need], ct)
	out := dst[:0]
	if inPlace {
		out = ct[:0]
	}
	s.openMu.Lock()
	putNonce(&s.openNonce, counter)
	plain, err := kp.Recv.Open(out, s.openNonce[:], ct, nil)
	s.openMu.Unlock()
	if err == nil && inPlace {
		plain = dst[:copy(dst[:len(plain)], plain)]
	}
	if err != nil {
		return Result{}, ErrAuth
	}
	now := s.now()
	switch kp.CheckCounter(counter, now) {
	case rekey.Replayed:
		return Result{}, ErrReplay
	case rekey.KeyExpired:
		return Result{}, ErrKeyExpired
	}
	var res Result
	var malformed error
	p := s.currentPeer()
	switch {
	case len(plain) == 0: // keepalive
	case plain[0] == handshake.ControlMarker: // a new ticket for our next handshake
		// The core discards a stale ticket (overtaken by a rekey, or under
		// a session we did not initiate) without an error, as the daemon
		// does (tunnel.Peer.controlReceived): an error is a message that
		// does not parse.
		if err := p.ReceiveControl(plain, kp, now); err != nil {
			malformed = fmt.Errorf("%w: control message: %w", ErrMalformed, err)
		}
	case s.cfg.Payload == PayloadMessages && plain[0] == payloadTagMessage:
		res.Data = plain[1:]
	case s.cfg.Payload == PayloadIP && isIP(plain):
		res.Data = plain
	default:
		malformed = fmt.Errorf("%w: payload of unknown kind 0x%02x", ErrMalformed, plain[0])
	}
	promoted, rekeyNow := p.Received(kp, res.Data != nil, now)
	if rekeyNow {
		s.want(p, now)
	}
	if promoted {
		if ticket := p.TicketFor(kp); ticket != nil {
			if msg, err := s.seal(nil, ticket, sealControl); err == nil {
				s.queue(msg)
			}
		}
	}
	res.Send = s.drain()
	return res, malformed
}

func (s *Session) unwrapInitiation(msg []byte) (Result, error) {
	if !s.cookies.CheckMAC1(msg) {
		return Result{}, handshake.ErrBadMAC1
	}
	idx := s.reg.Reserve()
	resp, sess, err := s.host.ConsumeInitiation(msg, idx)
	if err != nil {
		s.reg.Release(idx)
		if resp != nil { // an authenticated refusal: the peer learns why
			return Result{Send: [][]byte{resp}}, err
		}
		return Result{}, err
	}
	p, err := s.peerFor(sess.PeerID, "initiation")
	if err != nil {
		s.reg.Release(idx)
		sess.Zero()
		return Result{}, err
	}
	if err := p.Accept(sess, idx, s.now()); err != nil {
		return Result{}, err
	}
	return Result{Send: [][]byte{resp}}, nil
}

// peerFor returns the session's peer, making it for the responder's first
// initiation; an initiation from anyone else is refused. what names the
// handshake ("initiation", "resumption") in the refusal.
func (s *Session) peerFor(id, what string) (*session.Peer, error) {
	if p := s.currentPeer(); p != nil {
		return samePeer(p, id, what)
	}
	// The lookup is the caller's code, free to use this Session (or be
	// slow): it runs without s.mu, and a peer made meanwhile by a
	// concurrent initiation wins.
	info, err := s.cfg.Peers.LookupPeer([]byte(id))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peer != nil {
		return samePeer(s.peer, id, what)
	}
	s.peer = s.host.NewPeer(session.PeerConfig{ID: id, PublicKey: info.PublicKey, PresharedKey: info.PresharedKey}, s.reg)
	return s.peer, nil
}

func samePeer(p *session.Peer, id, what string) (*session.Peer, error) {
	if p.ID() != id {
		return nil, fmt.Errorf("%w: %s from %q, this session is with %q", ErrOtherPeer, what, id, p.ID())
	}
	return p, nil
}

func (s *Session) unwrapResponse(msg []byte) (Result, error) {
	if !s.cookies.CheckMAC1(msg) {
		return Result{}, handshake.ErrBadMAC1
	}
	idx, ok := handshake.PeekResponseReceiver(msg)
	if msg[0] == handshake.MessageTypeResumptionResponse {
		idx, ok = handshake.PeekResumptionResponseReceiver(msg)
	}
	p := s.currentPeer()
	if !ok || p == nil {
		return Result{}, ErrUnknownIndex
	}
	done, err := p.ConsumeResponse(idx, msg, p.ID(), s.now())
	if err != nil {
		if errors.Is(err, session.ErrNotPending) {
			return Result{}, ErrUnknownIndex
		}
		return Result{}, err
	}
	if done.Yielded { // crossing initiations: the peer's session is confirmed by its first packet
		return Result{}, nil
	}
	// Confirm the new key at once, so the responder may send under it.
	keepalive, err := s.seal(nil, nil, sealKeepalive)
	if err != nil {
		return Result{}, err
	}
	return Result{Send: append([][]byte{keepalive}, s.drain()...)}, nil
}

func (s *Session) unwrapCookieReply(msg []byte) (Result, error) {
	p := s.currentPeer()
	if p == nil {
		return Result{}, ErrUnknownIndex
	}
	if err := p.ConsumeCookieReply(msg); err != nil {
		return Result{}, err
	}
	// The peer is under load: initiate again at once, now with mac2.
	init, _, err := p.Initiate(s.now(), p.ID())
	if err != nil {
		return Result{}, err
	}
	return Result{Send: [][]byte{init}}, nil
}

// unwrapResumption answers a resumed handshake (Config.Tickets issued the
// ticket it carries).
func (s *Session) unwrapResumption(msg []byte) (Result, error) {
	if !s.cookies.CheckMAC1(msg) {
		return Result{}, handshake.ErrBadMAC1
	}
	idx := s.reg.Reserve()
	// The ticket's peer must be this Session's (or become it) before the
	// shared ring spends the ticket: a resumption steered here from another
	// Session of the server would otherwise burn its owner's ticket.
	// peerFor binds a Session that has no peer yet, as an authenticated
	// initiation does, so no other peer can take it between this check and
	// the Accept.
	var p *session.Peer
	resp, sess, st, err := s.host.ConsumeResumptionFor(msg, idx, func(st *handshake.TicketState) error {
		var err error
		if p, err = s.peerFor(st.PeerID, "resumption"); err != nil {
			return err
		}
		return p.MayResume(st)
	})
	if err != nil {
		s.reg.Release(idx)
		if resp != nil {
			return Result{Send: [][]byte{resp}}, err
		}
		return Result{}, err
	}
	if err := p.AcceptResumed(sess, st, idx, s.now()); err != nil {
		return Result{}, err
	}
	return Result{Send: [][]byte{resp}}, nil
}

// overlaps reports whether x and y share memory.
func overlaps(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	xs, ys := uintptr(unsafe.Pointer(unsafe.SliceData(x))), uintptr(unsafe.Pointer(unsafe.SliceData(y)))
	return xs < ys+uintptr(len(y)) && ys < xs+uintptr(len(x))
}
