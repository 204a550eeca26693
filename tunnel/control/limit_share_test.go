package control

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestUIDShare: one uid stops at UserShare connections in every tier while
// another uid of the same tier still gets in; root has no share; when both
// the share and the tier are used up the refusal names the share; the
// refusals are counted by reason and logged; and the share comes back when
// the connections close.
func TestUIDShare(t *testing.T) {
	noLeaks(t)
	runDir(t)
	l := newLimitServer(t)

	l.holdAs("reader", UserShare) // one user looping `stunnel show`
	l.refused("reader", "status", "control socket busy: uid 1001 holds 16 connections, the most one user may hold; try again")
	l.served("reader2", "status") // another reader, e.g. the node exporter's textfile job

	l.holdAs("operator", UserShare)
	l.refused("operator", "reload", busyShare(1002, UserShare))
	l.served("operator2", "reload")

	l.holdAs("root", UserShare+4) // root has no share
	l.served("root", "reload")

	// 52 open: the read-only tier is full too.
	l.refused("reader", "status", busyShare(1001, UserShare)) // its own doing first
	l.refused("reader2", "status", busy(52, tierRead))
	if open, limit, share := l.s.lim.count(); open != 2*UserShare+UserShare+4 || limit != 1 || share != 3 {
		t.Errorf("%d open, refused %d for the tier and %d for the share; want %d, 1 and 3", open, limit, share, 3*UserShare+4)
	}
	if limit, share := l.s.Refused(); limit != 1 || share != 3 {
		t.Errorf("Refused() = %d, %d; want 1, 3", limit, share)
	}
	lines := strings.Split(strings.TrimSpace(l.log.String()), "\n")
	if want := `refused=1 refused_total=1 open=16 limit=48 tier="read-only callers" last_uid=1001 last_pid=11 last_uid_open=16 last_reason=uid_share`; len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("log, want one line with %q:\n%s", want, l.log.String())
	}

	// Closed connections give their user's share back, and a user with
	// none open is forgotten (the map holds only users with a connection).
	l.releaseAll()
	l.s.lim.mu.Lock()
	users := len(l.s.lim.byUser)
	l.s.lim.mu.Unlock()
	if users != 0 {
		t.Errorf("%d users counted with no connection open", users)
	}
	l.holdAs("reader", UserShare)
	l.refused("reader", "status", busyShare(1001, UserShare))
}

// TestUIDShareUnknownCreds: callers whose credentials the kernel would not
// give share one user's share, and are never taken for root (the zero
// Creds reads as uid 0); root and the other users still get in.
func TestUIDShareUnknownCreds(t *testing.T) {
	if key, exempt := shareOf(Creds{}, fmt.Errorf("no creds")); key != unknownUser || exempt {
		t.Errorf("unknown credentials: share %v exempt %v, want the unknown user's, not exempt", key, exempt)
	}
	if _, exempt := shareOf(testCallers["root"], nil); !exempt {
		t.Error("root is not exempt")
	}
	addr := fmt.Sprintf("@stunnel-ctltest-%d-share", os.Getpid())
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lim := &limiter{groups: testGroups, credsOf: fakeCreds, log: slog.New(slog.DiscardHandler), now: time.Now,
		open: map[*ctlConn]struct{}{}, byUser: map[shareKey]int{}}
	// admitAs connects as who and returns the client's end and what admit
	// made of the server's (nil: refused).
	admitAs := func(who string) (*net.UnixConn, *ctlConn) {
		t.Helper()
		c := dialAs(t, addr, who)
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		uc, err := ln.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		sc := lim.admit(uc)
		if sc != nil {
			t.Cleanup(func() { sc.Close() })
		}
		return c, sc
	}
	for i := range UserShare {
		if _, sc := admitAs("unknown"); sc == nil {
			t.Fatalf("unknown caller %d refused, want %d admitted", i+1, UserShare)
		}
	}
	c, sc := admitAs("unknown")
	if sc != nil {
		t.Fatalf("unknown caller %d admitted: one user holds at most %d", UserShare+1, UserShare)
	}
	resp, err := http.ReadResponse(bufioReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := "control socket busy: callers whose credentials are unknown hold 16 connections, the most one user may hold; try again"
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), want) {
		t.Errorf("the unknown caller over the share: %d %s, want 503 %q", resp.StatusCode, body, want)
	}
	for _, who := range []string{"root", "reader"} {
		if _, sc := admitAs(who); sc == nil {
			t.Errorf("%s refused while the unknown callers hold their share", who)
		}
	}
}
