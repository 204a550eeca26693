package netnstests

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/softhsmtest"
)

// TestTokenKeyTunnel: host-a's static key lives in a SoftHSM2 token (made
// with `stunnel genkey --pkcs11`), host-b's in a file. Ping and a TCP
// transfer go through the tunnel across several rekeys (rekey_after 2s),
// each a full handshake with host-a's DHs done by the token.
func TestTokenKeyTunnel(t *testing.T) {
	_, a, b := tokenHosts(t)
	pingUntil(t, a.ns, overB, sessionWait)
	pingUntil(t, b.ns, overA, sessionWait)
	first := a.waitSession(b.ID, sessionWait)

	tcpStream(t, a.ns, b.ns, overB, streamOpts{Duration: 12 * time.Second, Timeout: 60 * time.Second})
	tcpStream(t, b.ns, a.ns, overA, streamOpts{Size: 8 << 20, Timeout: 60 * time.Second})

	pa, pb := a.peer(b.ID), b.peer(a.ID)
	t.Logf("handshakes: %s %d, %s %d", a.ID, pa.Handshakes, b.ID, pb.Handshakes)
	if hs := max(pa.Handshakes, pb.Handshakes) - first.Handshakes; hs < 4 {
		t.Errorf("%d handshakes in 12+ s with rekey_after 2s, want at least 4", hs)
	}
	if pa.SessionID == first.SessionID {
		t.Errorf("session ID %s never changed", first.SessionID)
	}
	if pa.Drops[dropNoKey] != 0 || pb.Drops[dropNoKey] != 0 {
		t.Errorf("packets dropped for want of a key: %d / %d", pa.Drops[dropNoKey], pb.Drops[dropNoKey])
	}
	if log := a.log(); strings.Contains(log, "static key operation failed") {
		t.Errorf("token operations failed:\n%s", log)
	}
	// A reload of the same config keeps the token key (compared by URI).
	a.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "host-a to reload with its token key", func() bool {
		return strings.Contains(a.log(), "configuration reloaded")
	})
	if strings.Contains(a.log(), "reload failed") {
		t.Fatalf("reload with the same token key refused:\n%s", a.log())
	}
	pingUntil(t, a.ns, overB, sessionWait)
}

// tokenHosts starts two hosts with rekey_after 2s whose host-a keeps its
// key in a new SoftHSM2 token, made with `stunnel genkey --pkcs11`.
func tokenHosts(t *testing.T) (tok *softhsmtest.Token, a, b *node) {
	l := newLab(t)
	tok = softhsmtest.New(t, "gw") // SOFTHSM2_CONF is inherited by the daemons
	uri := tok.URI("host-a")
	out, err := exec.Command(stunnelBin, "genkey", "--pkcs11", uri).Output()
	if err != nil {
		t.Fatalf("stunnel genkey --pkcs11: %v", err)
	}
	pub := strings.TrimSpace(string(out))
	session := []string{`rekey_after = "2s"`, `reject_after = "4s"`}
	a, b = l.twoHosts(func(a, b *node) {
		a.KeyTOML = fmt.Sprintf("private_key = %q", uri)
		a.Key = keyPair{public: pub} // no private key outside the token
		b.Peers[0].PublicKey = pub
		a.Session, b.Session = session, session
		// Without tickets every rekey is a full handshake, a token
		// operation: with them a rekey needs none (pkcs11key's
		// TestResumedRekeyNeedsNoTokenOperation), and a pulled token would
		// go unnoticed until reauth_after.
		a.Extra, b.Extra = "[tickets]\nenabled = false\n", "[tickets]\nenabled = false\n"
	})
	if got := a.show().PublicKey; got != pub {
		t.Fatalf("host-a runs with public key %s, want the token's %s", got, pub)
	}
	return tok, a, b
}

// TestTokenPulledAndBack: host-a's token disappears (its store is moved
// away) while the tunnel runs. Handshakes then fail, saying why in the log
// and in show; once the keys expire traffic stops. When the token comes
// back, the daemon logs in again by itself and traffic flows.
func TestTokenPulledAndBack(t *testing.T) {
	tok, a, b := tokenHosts(t)
	pingUntil(t, a.ns, overB, sessionWait)
	a.waitSession(b.ID, sessionWait)

	if err := os.Rename(tok.Dir+"/tokens", tok.Dir+"/pulled"); err != nil {
		t.Fatal(err)
	}
	// Traffic both ways makes both sides start handshakes: host-a's fail
	// as initiator (show's last_error) and as responder (its log).
	waitFor(t, 30*time.Second, "host-a to report the token failure in show and its log", func() bool {
		_ = tryPing(a.ns, overB, 1, 1)
		_ = tryPing(b.ns, overA, 1, 1)
		return strings.Contains(a.log(), "static key operation failed") &&
			strings.Contains(a.peer(b.ID).LastError, `token "gw"`)
	})
	t.Logf("host-a last_error while the token is gone: %s", a.peer(b.ID).LastError)
	waitFor(t, 20*time.Second, "traffic to stop once the keys expired", func() bool { return tryPing(a.ns, overB, 1, 1) != nil })
	if a.exited() {
		t.Fatal("host-a exited while its token was gone")
	}

	// Counted while the token is gone, when no handshake can complete: a
	// retry already due completes as soon as the token is back, and read
	// after the rename it would be in the count already.
	before := a.peer(b.ID).Handshakes
	if err := os.Rename(tok.Dir+"/pulled", tok.Dir+"/tokens"); err != nil {
		t.Fatal(err)
	}
	pingUntil(t, a.ns, overB, 30*time.Second)
	pingUntil(t, b.ns, overA, sessionWait)
	if after := a.peer(b.ID).Handshakes; after <= before {
		t.Errorf("traffic flows again but no new handshake was counted (%d, %d)", before, after)
	}
}

// TestTokenKeyOneLoginAtStart: a daemon started as full root narrows its
// capabilities by re-executing itself (privileges_linux.go) and logs in to
// its token once, after that, not once in each image: the login before
// the re-exec was thrown away with the process image. SoftHSM2 cannot
// count logins; the daemon logs each one (pkcs11key.OpenLogged).
func TestTokenKeyOneLoginAtStart(t *testing.T) {
	l := newLab(t)
	tok := softhsmtest.New(t, "gw") // SOFTHSM2_CONF is inherited by the daemon
	uri := tok.URI("host-a")
	if out, err := exec.Command(stunnelBin, "genkey", "--pkcs11", uri).CombinedOutput(); err != nil {
		t.Fatalf("stunnel genkey --pkcs11: %v: %s", err, out)
	}
	n := l.newNode(l.ns("a"), "host-a", underA, overA+"/24")
	n.KeyTOML = fmt.Sprintf("private_key = %q\nlog_level = \"debug\"", uri) // logins are logged at debug
	n.start()
	const netAdmin = 1 << 12 // CAP_NET_ADMIN
	if c := capsOf(t, n.cmd.Process.Pid); c["CapBnd"] != netAdmin {
		t.Fatalf("the daemon did not narrow its capabilities by re-executing (CapBnd=%#x), so this test shows nothing", c["CapBnd"])
	}
	if got := strings.Count(n.log(), "logged in to the PKCS#11 token"); got != 1 {
		t.Errorf("the daemon logged in to its token %d times at start, want once; log:\n%s", got, n.log())
	}
	if code := n.stop(); code != 0 {
		t.Errorf("exit %d after a clean stop; log:\n%s", code, n.log())
	}
}
