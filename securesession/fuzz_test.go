package securesession

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"testing/iotest"

	"stunnel/handshake"
	"stunnel/rekey"
)

// FuzzUnwrap feeds arbitrary bytes to an established session, and to a
// fresh responder: nothing may panic, and garbage never yields data.
func FuzzUnwrap(f *testing.F) {
	p := newPair(f, rekey.DefaultPolicy())
	first, err := p.alice.Connect("bob")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(first)
	deliver(f, p.bob, p.alice, [][]byte{first})
	sealed := mustWrap(f, p.alice, "seed")
	f.Add(sealed)
	f.Add([]byte{4, 1, 0, 0, 1, 2, 3, 4})
	// A forgery: what a data message's plaintext looks like, with a zero
	// tag, under another process's index (rewritten below).
	f.Add(append([]byte{4, 1, 0, 0, 9, 9, 9, 9, 7, 0, 0, 0, 0, 0, 0, 0, payloadTagMessage, 'f', 'o', 'r', 'g', 'e', 'd'}, make([]byte, tagLen)...))
	bobIndex := binary.LittleEndian.Uint32(sealed[4:8])
	fresh := newPair(f, rekey.DefaultPolicy())
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Each fuzzing worker makes its own pair, with its own random
		// receiver indices, while the corpus comes from other processes:
		// aim data messages at this process's session, or every mutation
		// stops at the index lookup and never reaches the AEAD or the
		// replay window.
		if len(msg) >= 8 && msg[0] == handshake.MessageTypeData {
			msg = bytes.Clone(msg)
			binary.LittleEndian.PutUint32(msg[4:8], bobIndex)
		}
		// Only alice's sealed message is genuine: any other input that
		// gives data is a forgery that got through. (A bound on the
		// length alone cannot fail: so short a message never opens.)
		if res, err := p.bob.Unwrap(msg); err == nil && res.Data != nil && !bytes.Equal(msg, sealed) {
			t.Fatalf("a message alice never sealed gave data %q", res.Data)
		}
		if res, err := fresh.bob.Unwrap(msg); err == nil && res.Data != nil {
			t.Fatalf("a session with no keys gave data %q", res.Data)
		}
	})
}

// FuzzReadFrame reads a stream of frames, as StreamTransport does from a
// TCP peer: every frame read fits the buffer, writing the frames back gives
// the bytes consumed, and the stream ends as its remaining bytes say: io.EOF
// at a frame boundary, io.ErrUnexpectedEOF inside a frame, a refusal for a
// frame larger than the buffer; never with a length. mode picks the buffer
// (MaxFrame, or mode/4 bytes) and whether the stream comes a byte at a time.
func FuzzReadFrame(f *testing.F) {
	var stream bytes.Buffer
	for _, m := range [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{4}, 300)} {
		if err := WriteFrame(&stream, m); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(stream.Bytes(), byte(0))
	f.Add(stream.Bytes(), byte(1))
	f.Add(stream.Bytes(), byte(4*8+2)) // an 8-byte buffer: "hello" fits, 300 bytes do not
	f.Add([]byte{0xff, 0xff, 1, 2, 3}, byte(0))
	f.Add([]byte{0}, byte(1))
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		size := MaxFrame
		if mode&2 != 0 {
			size = int(mode >> 2)
		}
		var r io.Reader = bytes.NewReader(data)
		if mode&1 != 0 {
			r = iotest.OneByteReader(r)
		}
		buf := make([]byte, size)
		var back bytes.Buffer
		for {
			n, err := ReadFrame(r, buf)
			if err != nil {
				rest := data[back.Len():]
				want := io.ErrUnexpectedEOF
				switch {
				case len(rest) == 0:
					want = io.EOF
				case len(rest) >= 2 && int(binary.BigEndian.Uint16(rest)) > size:
					want = nil // refused: any error but the two EOFs
				}
				if n != 0 || err != want && (want != nil || err == io.EOF || err == io.ErrUnexpectedEOF) {
					t.Fatalf("%d bytes left in a %d-byte buffer: %d, %v; want 0, %v", len(rest), size, n, err, want)
				}
				return
			}
			if n > len(buf) {
				t.Fatalf("frame of %d bytes in a %d-byte buffer", n, len(buf))
			}
			if err := WriteFrame(&back, buf[:n]); err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, back.Bytes()) {
				t.Fatal("the frames read do not write back as the stream's bytes")
			}
		}
	})
}

// FuzzUnwrapTo opens sealed messages with UnwrapTo into a dst that shares
// the message's array at any offset and with any capacity (a receive loop's
// one buffer, or a caller's odd slicing): the in-place path's overlap logic
// (once a panic in the AEAD, TestUnwrapToInTheMessagesOwnBuffer). Nothing
// may panic; a genuine message gives its data whatever the layout; one
// with any bit flipped gives none.
func FuzzUnwrapTo(f *testing.F) {
	p := newPair(f, rekey.DefaultPolicy())
	p.connect(f)
	f.Add([]byte("in place"), uint16(0), uint16(0), uint16(0), uint32(0))
	f.Add(bytes.Repeat([]byte("x"), 300), uint16(8), uint16(0), uint16(0), uint32(0))
	f.Add(bytes.Repeat([]byte("y"), 40), uint16(0), uint16(headerLen+7), uint16(0), uint32(0))
	f.Add([]byte{}, uint16(30), uint16(5), uint16(3), uint32(0))
	f.Add([]byte("flipped"), uint16(0), uint16(0), uint16(0), uint32(9*8+3))
	f.Fuzz(func(t *testing.T, data []byte, msgAt, dstAt, dstCap uint16, flip uint32) {
		if len(data) > 256 { // longer data reaches no other code, and is slow to minimize
			data = data[:256]
		}
		want := bytes.Clone(data)
		sealed, err := p.alice.Wrap(data)
		if err != nil {
			t.Fatal(err)
		}
		if flip != 0 {
			bit := (flip - 1) % uint32(8*len(sealed))
			sealed[bit/8] ^= 1 << (bit % 8)
		}
		buf := make([]byte, int(msgAt%512)+len(sealed)+512)
		at := int(msgAt % 512)
		msg := buf[at : at+copy(buf[at:], sealed)]
		d := int(dstAt) % len(buf)
		c := len(buf) - d
		if dstCap != 0 {
			c = int(dstCap) % (c + 1)
		}
		res, err := p.bob.UnwrapTo(buf[d:d:d+c], msg)
		switch {
		case flip == 0 && (err != nil || !bytes.Equal(res.Data, want)):
			t.Fatalf("message at %d, dst at %d cap %d: UnwrapTo gave %q, %v; want %q", at, d, c, res.Data, err, want)
		case flip != 0 && err == nil && res.Data != nil:
			t.Fatalf("a message with bit %d flipped gave data %q", (flip-1)%uint32(8*len(sealed)), res.Data)
		}
	})
}
