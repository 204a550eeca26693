package securesession

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// MaxFrame is the largest message a frame carries: a two-byte length.
const MaxFrame = 65535

// WriteFrame writes msg behind a two-byte big-endian length, so a stream
// (TCP, a pipe) can carry messages. One Write call per frame.
func WriteFrame(w io.Writer, msg []byte) error {
	if len(msg) > MaxFrame {
		return fmt.Errorf("securesession: frame of %d bytes, at most %d", len(msg), MaxFrame)
	}
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame into buf and returns its length. buf must hold
// MaxFrame bytes, or the frame is refused (and the stream is then out of
// step: close it). io.EOF means the stream ended between frames; one that
// ends inside a frame, even right after its length, is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > len(buf) {
		return 0, fmt.Errorf("securesession: frame of %d bytes does not fit a %d-byte buffer", n, len(buf))
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		// ReadFull says io.EOF when it read nothing, but the length
		// promised n bytes: a peer cut off there did not end cleanly.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return n, nil
}

// StreamTransport carries messages over a stream connection in frames.
func StreamTransport(c net.Conn) Transport {
	return Transport{
		Send:    func(msg []byte) error { return WriteFrame(c, msg) },
		Receive: func(buf []byte) (int, error) { return ReadFrame(c, buf) },
		Close:   c.Close,
	}
}

// PacketTransport carries messages as datagrams of a connected packet
// connection (a UDP socket made with net.DialUDP, say). A datagram the
// peer's host refused (nobody listening there yet) is a lost datagram: the
// Conn keeps retrying.
func PacketTransport(c net.Conn) Transport {
	return Transport{
		Send: func(msg []byte) error { _, err := c.Write(msg); return err },
		Receive: func(buf []byte) (int, error) {
			for {
				n, err := c.Read(buf)
				// A connected UDP socket reports the ICMP port unreachable
				// of an earlier datagram on its next read: the peer is not
				// up yet, or restarting. That datagram is lost and the
				// timers retry it; ending the Conn would end it for good.
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue
				}
				return n, err
			}
		},
		Close: c.Close,
	}
}
