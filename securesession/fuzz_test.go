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
