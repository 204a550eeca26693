package ticketring

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"stunnel/tickets"
)

// Whoever may write below the prefix chooses the keys there: a key of a
// megabyte with control characters in it is refused like any record that
// does not open, and logged escaped and cut short, not whole on every
// gateway (as the directory logs its keys).
func TestRefusedRecordKeyLoggedBounded(t *testing.T) {
	var logs bytes.Buffer
	ring := tickets.NewRing(tickets.Options{})
	s := &Sync{
		opt:     Options{Prefix: prefix, Secret: secret(t, 1), Ring: ring},
		log:     slog.New(slog.NewTextHandler(&logs, nil)),
		dir:     prefix + recordsDir,
		elect:   prefix + electionDir,
		keys:    map[string]*tickets.Key{},
		refused: map[string]int64{},
		leaders: map[string]leaderEntry{},
	}
	key := s.dir + "\x1b[2J\nlevel=ERROR msg=forged " + strings.Repeat("a", 1<<20)
	s.mu.Lock()
	s.putLocked(key, []byte("junk"), 7, 7)
	s.mu.Unlock()
	if s.status.RefusedTotal != 1 || len(s.refused) != 1 {
		t.Fatalf("the key was not refused: %+v", s.status)
	}
	line := logs.String()
	if n := strings.Count(line, "\n"); n != 1 {
		t.Fatalf("%d log lines, want 1: %.300q", n, line)
	}
	if len(line) > 1024 {
		t.Fatalf("a %d-byte log line for one refused key", len(line))
	}
	if strings.Contains(line, "\x1b") {
		t.Fatalf("the key's escape character reached the log: %.300q", line)
	}
	if !strings.Contains(line, "tickets/") || !strings.Contains(line, "...") {
		t.Fatalf("the log line does not show the key's start, cut: %.300q", line)
	}
}

// The rotator's identity in Status is the value of its election key, which
// whoever may write below the prefix chooses: a megabyte with control
// characters in it is shown escaped and cut short, not whole in every
// status reply and show (nor kept whole); a gateway's own identity shows
// as written.
func TestRotatorNameShownBounded(t *testing.T) {
	s := &Sync{
		opt:     Options{Prefix: prefix, Identity: "gw-1.example pid 4242"},
		elect:   prefix + electionDir,
		leaders: map[string]leaderEntry{},
	}
	value := "\x1b[2J\nrotator: forged " + strings.Repeat("a", 1<<20)
	s.mu.Lock()
	s.putLocked(s.elect+"/694d8a1b2c3d4e5f", []byte(value), 7, 7)
	s.putLocked(s.elect+"/694d8a1b2c3d4e60", []byte("later candidate"), 8, 8)
	s.mu.Unlock()
	st := s.Status()
	const most = 4*shownRotatorMax + len("...") // each byte kept escapes to \xNN at most
	if kept := len(s.leaders[s.elect+"/694d8a1b2c3d4e5f"].value); len(st.Rotator) > most || kept > most {
		t.Fatalf("rotator shown (%d bytes) or kept (%d bytes) unbounded", len(st.Rotator), kept)
	}
	if strings.ContainsAny(st.Rotator, "\x1b\n") || !strings.HasPrefix(st.Rotator, `\x1b[2J\nrotator: forged aaa`) || !strings.HasSuffix(st.Rotator, "...") {
		t.Fatalf("rotator shown as %q, want the oldest candidate's value escaped and cut short", st.Rotator)
	}
	s.setRole("rotator")
	if st := s.Status(); st.Rotator != "gw-1.example pid 4242" {
		t.Fatalf("own identity shown as %q", st.Rotator)
	}
}
