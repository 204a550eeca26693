package control

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A key pasted where a peer ID or a ticket key's name belongs (`stunnel
// rekey KEY`, `stunnel tickets retire KEY`) reaches neither the audit log
// nor the reply, which quotes the argument the handler could not find.
// The CLI hid it in its own messages but sent it, and the daemon wrote it
// to the journal in the audit line and echoed it back in the error.
func TestKeyShapedArgumentHidden(t *testing.T) {
	noLeaks(t)
	runDir(t)
	var audit bytes.Buffer
	aw := &syncWriter{w: &audit}
	notFound := func(what string) func(string) error {
		return func(arg string) error {
			return NotFound(fmt.Errorf("%s %q: %w", what, arg, errors.New("no such thing")))
		}
	}
	s, err := Listen(Config{Name: "st0", Handlers: Handlers{
		Status:     func() ([]byte, error) { return []byte("{}"), nil },
		Rekey:      notFound("peer"),
		Disconnect: notFound("peer"),
		TicketsRetire: func(arg string) ([]byte, error) {
			return nil, notFound("no ticket key named")(arg)
		},
	}, Audit: slog.New(slog.NewTextHandler(aw, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, key := range []string{
		"sVn9Yw1kDq2gHf3JpX8rT0cLmB5aZ7eU4iO6yN1wQ+E=", // base64 of 32 bytes, as genkey prints a key
		strings.Repeat("9f", 32),                       // 64 hex digits, as a group secret file holds it
	} {
		for _, cmd := range []string{"rekey", "disconnect", "tickets retire"} {
			audit.Reset()
			_, err := Query(SocketPath("st0"), cmd, key)
			if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "looks like a key") {
				t.Errorf("%s KEY: reply %v; want the key hidden", cmd, err)
			}
			if line := aw.String(); strings.Contains(line, key) || !strings.Contains(line, "msg=audit") {
				t.Errorf("%s KEY: audit line %q holds the key", cmd, line)
			}
		}
	}
}
