// Command echo is a securesession example: an echo service over TCP, each
// message sealed by the stunnel protocol and framed on the stream.
//
//	echo -serve 127.0.0.1:7000 -id server -key SERVER_PRIVATE -peer client=CLIENT_PUBLIC
//	echo -connect 127.0.0.1:7000 -id client -key CLIENT_PRIVATE -peer server=SERVER_PUBLIC hello world
//
// The server prints "listening on ADDR" and answers every message of every
// client it accepts with "echo: " and the message; the client sends each
// argument as one message and prints the answers. Keys are the base64 of
// `stunnel genkey` and `stunnel pubkey`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"stunnel/handshake"
	"stunnel/securesession"
)

func main() {
	serve := flag.String("serve", "", "listen on this TCP address and echo")
	connect := flag.String("connect", "", "connect to this TCP address and send the arguments")
	id := flag.String("id", "", "our peer ID")
	key := flag.String("key", "", "our private key (base64)")
	peer := flag.String("peer", "", "the peer as ID=PUBLICKEY")
	timeout := flag.Duration("timeout", 10*time.Second, "client: give up after this long")
	flag.Parse()
	if err := run(*serve, *connect, *id, *key, *peer, *timeout, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run(serve, connect, id, key, peer string, timeout time.Duration, msgs []string) error {
	priv, err := handshake.ParsePrivateKey(key)
	if err != nil {
		return fmt.Errorf("-key: %v", err)
	}
	peerID, peerKey, ok := strings.Cut(peer, "=")
	pub, err := handshake.ParsePublicKey(peerKey)
	if !ok || err != nil {
		return errors.New("-peer must be ID=PUBLICKEY")
	}
	cfg := securesession.Config{PeerID: id, PrivateKey: priv,
		Peers: securesession.LookupFunc(func(claimed string) (handshake.PeerInfo, error) {
			if claimed == peerID {
				return handshake.PeerInfo{PublicKey: pub}, nil
			}
			return handshake.PeerInfo{}, handshake.ErrUnknownPeer
		})}
	switch {
	case serve != "":
		return runServer(serve, cfg)
	case connect != "":
		return runClient(connect, peerID, cfg, timeout, msgs)
	}
	return errors.New("say -serve ADDR or -connect ADDR")
}

func runServer(addr string, cfg securesession.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			conn, err := securesession.Accept(cfg, securesession.StreamTransport(c))
			if err != nil {
				fmt.Fprintln(os.Stderr, "echo:", err)
				c.Close()
				return
			}
			defer conn.Close()
			ctx := context.Background()
			for {
				m, err := conn.Receive(ctx)
				if err != nil {
					return
				}
				if err := conn.Send(ctx, append([]byte("echo: "), m...)); err != nil {
					return
				}
			}
		}()
	}
}

func runClient(addr, peerID string, cfg securesession.Config, timeout time.Duration, msgs []string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	conn, err := securesession.Dial(cfg, peerID, securesession.StreamTransport(c))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, m := range msgs {
		if err := conn.Send(ctx, []byte(m)); err != nil {
			return err
		}
		answer, err := conn.Receive(ctx)
		if err != nil {
			return err
		}
		fmt.Println(string(answer))
	}
	return nil
}
