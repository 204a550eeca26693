// Command flood sends handshake initiations with a valid mac1 (anyone who
// knows the responder's public key can make them) as fast as it can, for the
// bench's flood rows: the same attack on stunnel and on wireguard-go.
//
//	flood -proto stunnel|wireguard -pub BASE64 -from IP -to IP:PORT -duration 12s
//
// Only for the bench's test namespaces (198.18.0.0/15 addresses).
package main

import (
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/blake2s"

	"stunnel/handshake"
)

func main() {
	proto := flag.String("proto", "stunnel", "stunnel or wireguard")
	pubB64 := flag.String("pub", "", "the responder's public key, base64")
	from := flag.String("from", "", "local address to send from")
	to := flag.String("to", "", "responder ip:port")
	dur := flag.Duration("duration", 10*time.Second, "how long")
	flag.Parse()
	pub, err := base64.StdEncoding.DecodeString(*pubB64)
	if err != nil || len(pub) != 32 {
		fail("-pub must be base64 of 32 bytes")
	}
	dst, err := net.ResolveUDPAddr("udp", *to)
	if err != nil {
		fail("-to: %v", err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(*from)})
	if err != nil {
		fail("listening on %s: %v", *from, err)
	}
	var msg []byte
	var addMAC func()
	switch *proto {
	case "stunnel":
		var k handshake.PublicKey
		copy(k[:], pub)
		gen := handshake.NewCookieGenerator(k, nil)
		msg = make([]byte, handshake.InitiationSize)
		msg[0], msg[1] = handshake.MessageTypeInitiation, handshake.ProtocolVersion
		addMAC = func() { gen.AddMACs(msg) }
	case "wireguard":
		// WireGuard's message 1: 148 bytes, mac1 at 116 = BLAKE2s-128 keyed
		// with BLAKE2s-256("mac1----" || pub), over the first 116 bytes.
		key := blake2s.Sum256(append([]byte("mac1----"), pub...))
		msg = make([]byte, 148)
		msg[0] = 1
		addMAC = func() {
			h, _ := blake2s.New128(key[:])
			h.Write(msg[:116])
			h.Sum(msg[116:116])
		}
	default:
		fail("-proto must be stunnel or wireguard")
	}
	deadline := time.Now().Add(*dur)
	var sent, errs uint64
	for i := uint64(0); ; i++ {
		if i%1024 == 0 && time.Now().After(deadline) {
			break
		}
		binary.LittleEndian.PutUint64(msg[8:], i*0x9e3779b97f4a7c15)
		addMAC()
		if _, err := conn.WriteToUDP(msg, dst); err != nil {
			errs++
		} else {
			sent++
		}
	}
	fmt.Printf("sent %d initiations (%d send errors) in %v\n", sent, errs, *dur)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flood: "+format+"\n", args...)
	os.Exit(2)
}
