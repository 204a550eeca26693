package securesession_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/securesession"
)

// The echo example is built and run: a server and a client over loopback
// TCP, talking the stunnel protocol through the framing helper. A client
// whose key the server does not have gets no answer.
func TestEchoExampleProgram(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "echo")
	if out, err := exec.Command("go", "build", "-o", bin, "./examples/echo").CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}
	serverKey, clientKey, _ := mustKey(t), mustKey(t), mustKey(t)
	server := exec.Command(bin, "-serve", "127.0.0.1:0", "-id", "server", "-key", serverKey.Base64(),
		"-peer", "client="+clientKey.PublicKey().String())
	stdout, _ := server.StdoutPipe()
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("server said %q, %v", line, err)
	}
	out, err := exec.Command(bin, "-connect", addr, "-id", "client", "-key", clientKey.Base64(),
		"-peer", "server="+serverKey.PublicKey().String(), "hello", "secure world").CombinedOutput()
	if err != nil || string(out) != "echo: hello\necho: secure world\n" {
		t.Fatalf("client: %v, output %q", err, out)
	}
	stranger := mustKey(t)
	out, err = exec.Command(bin, "-connect", addr, "-timeout", "2s", "-id", "client", "-key", stranger.Base64(),
		"-peer", "server="+serverKey.PublicKey().String(), "let me in").CombinedOutput()
	if err == nil || strings.Contains(string(out), "echo: let me in") {
		t.Fatalf("a client with the wrong key got through: %q (%v)", out, err)
	}
}

func mustKey(t *testing.T) handshake.PrivateKey {
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Example shows the buffer API: the application moves every message
// itself (here, straight from one session to the other).
func Example() {
	aliceKey, _ := handshake.GeneratePrivateKey(nil)
	bobKey, _ := handshake.GeneratePrivateKey(nil)
	directory := securesession.LookupFunc(func(id string) (handshake.PeerInfo, error) {
		switch id {
		case "alice":
			return handshake.PeerInfo{PublicKey: aliceKey.PublicKey()}, nil
		case "bob":
			return handshake.PeerInfo{PublicKey: bobKey.PublicKey()}, nil
		}
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	})
	alice, _ := securesession.New(securesession.Config{PeerID: "alice", PrivateKey: aliceKey, Peers: directory})
	bob, _ := securesession.New(securesession.Config{PeerID: "bob", PrivateKey: bobKey, Peers: directory})

	msg, _ := alice.Connect("bob") // message 1 of the handshake
	res, _ := bob.Unwrap(msg)      // bob answers with message 2
	res, _ = alice.Unwrap(res.Send[0])
	_, _ = bob.Unwrap(res.Send[0]) // alice's confirmation: both are established

	sealed, _ := alice.Wrap([]byte("hello, bob"))
	got, _ := bob.Unwrap(sealed)
	fmt.Println(string(got.Data), alice.Established(), bob.Established(), bob.PeerID())
	// Output: hello, bob true true alice
}

// ExampleDial shows the callback API over a stream (net.Pipe standing in
// for TCP): the Conns handshake by themselves; Send waits for it.
func ExampleDial() {
	aliceKey, _ := handshake.GeneratePrivateKey(nil)
	bobKey, _ := handshake.GeneratePrivateKey(nil)
	directory := securesession.LookupFunc(func(id string) (handshake.PeerInfo, error) {
		switch id {
		case "alice":
			return handshake.PeerInfo{PublicKey: aliceKey.PublicKey()}, nil
		case "bob":
			return handshake.PeerInfo{PublicKey: bobKey.PublicKey()}, nil
		}
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	})
	a, b := net.Pipe()
	bob, _ := securesession.Accept(securesession.Config{PeerID: "bob", PrivateKey: bobKey, Peers: directory},
		securesession.StreamTransport(b))
	alice, _ := securesession.Dial(securesession.Config{PeerID: "alice", PrivateKey: aliceKey, Peers: directory},
		"bob", securesession.StreamTransport(a))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = alice.Send(ctx, []byte("over a stream"))
	got, _ := bob.Receive(ctx)
	fmt.Println(string(got))
	alice.Close()
	bob.Close()
	// Output: over a stream
}
