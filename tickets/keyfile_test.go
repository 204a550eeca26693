package tickets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// With its fields out of order a key line may carry the secret in any field,
// and the parse error is printed by `stunnel check` and logged at start-up
// and on reload. The error must name FILE:LINE and the bad field, and never
// the secret, whichever field the secret landed in.
func TestKeyFileErrorNeverEchoesMisplacedSecret(t *testing.T) {
	k, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	line := strings.Split(string(MarshalKeyFile([]Key{k})), "\n")[1]
	f := strings.Fields(line)
	secret := f[1]
	// Swap SECRET with each other field in turn; the first is the common
	// mistake, NAME and SECRET swapped.
	for _, c := range []struct {
		other int
		field string
	}{{0, "field 1 (NAME)"}, {2, "field 2 (SECRET)"}, {3, "field 2 (SECRET)"}, {4, "field 2 (SECRET)"}} {
		g := append([]string(nil), f...)
		g[1], g[c.other] = g[c.other], g[1]
		_, err := ParseKeyFile("/etc/stunnel/tickets.key", []byte("# keys\n"+strings.Join(g, " ")+"\n"))
		if err == nil {
			t.Fatalf("swap 2<->%d: accepted", c.other+1)
		}
		msg := err.Error()
		if strings.Contains(msg, secret) {
			t.Fatalf("swap 2<->%d: the error carries the secret: %v", c.other+1, err)
		}
		if !strings.HasPrefix(msg, "/etc/stunnel/tickets.key:2: ") || !strings.Contains(msg, c.field) {
			t.Fatalf("swap 2<->%d: error %q does not name FILE:LINE and %s", c.other+1, msg, c.field)
		}
	}
	// Secrets in CREATED or a lifetime (the secret itself well-formed but
	// misplaced after a good one) are not quoted either.
	for i := 2; i < 5; i++ {
		g := append([]string(nil), f...)
		g[i] = secret
		_, err := ParseKeyFile("F", []byte(strings.Join(g, " ")+"\n"))
		if err == nil || strings.Contains(err.Error(), secret) || !strings.HasPrefix(err.Error(), "F:1: field ") {
			t.Fatalf("secret in field %d: %v", i+1, err)
		}
	}
}

// A key file that lists no key (empty, only comments, or truncated to
// nothing by a cp under way at a reload) is refused by LoadFile with one
// line naming the file, and the running ring keeps every key it had: before
// the fix it silently replaced them with none.
func TestLoadFileRefusesKeylessFileKeepingKeys(t *testing.T) {
	clk := &manualClock{t: t0}
	path := filepath.Join(t.TempDir(), "ticket.keys")
	k1, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	k2, _ := GenerateKey(nil, t0.Add(time.Minute), time.Hour, time.Hour)
	writeKeys(t, path, k1, k2)
	r := NewRing(Options{Now: clk.Now})
	if err := r.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	tk, err := r.Seal(state(clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	before := r.Keys()
	for _, body := range []string{"", "\n", "# stunnel ticket keys\n", "# only a comment\n\n   \n# another"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		err := r.LoadFile(path)
		if err == nil || !strings.Contains(err.Error(), "ticket key file "+path+" lists no key") || strings.Contains(err.Error(), "\n") {
			t.Errorf("key file %q: LoadFile = %v; want one line refusing it, naming %s", body, err, path)
		}
		if after := r.Keys(); !reflect.DeepEqual(after, before) {
			t.Errorf("key file %q: refused, yet the ring's keys changed:\nbefore %v\nafter  %v", body, before, after)
		}
		if _, err := r.OpenTicket(tk); err != nil {
			t.Errorf("key file %q: a ticket of the running keys no longer opens: %v", body, err)
		}
	}
	// `stunnel tickets add` may still fill an empty file: only a ring's
	// reading refuses it.
	if keys, err := ReadKeyFile(path); err != nil || len(keys) != 0 {
		t.Errorf("ReadKeyFile of a keyless file: %d keys, %v; want none and no error", len(keys), err)
	}
}

// A key file read while it is being written (cut at any byte) is either
// refused, the ring keeping its keys, or, cut just after a line's newline,
// a whole shorter file (format 1 cannot tell that from one the operator
// wrote). A cut inside the last lifetime ("1h30m0s" read as "1h") parses;
// it is refused for its missing newline.
func TestLoadFileRefusesHalfWrittenFile(t *testing.T) {
	clk := &manualClock{t: t0}
	path := filepath.Join(t.TempDir(), "ticket.keys")
	k1, _ := GenerateKey(nil, t0, 90*time.Minute, 13*time.Hour+30*time.Minute)
	k2, _ := GenerateKey(nil, t0.Add(time.Minute), 90*time.Minute, 13*time.Hour+30*time.Minute)
	whole := MarshalKeyFile([]Key{k1, k2})
	r := NewRing(Options{Now: clk.Now})
	load := func(data []byte) error {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return r.LoadFile(path)
	}
	if err := load(whole); err != nil {
		t.Fatal(err)
	}
	before := r.Keys()
	accepted := 0
	for cut := 0; cut < len(whole); cut++ {
		if err := load(whole[:cut]); err == nil {
			if cut == 0 || whole[cut-1] != '\n' {
				t.Fatalf("cut at byte %d of %d (%q): accepted", cut, len(whole), whole[:cut][bytes.LastIndexByte(whole[:cut], '\n')+1:])
			}
			accepted++
			if err := load(whole); err != nil { // back to the whole file
				t.Fatal(err)
			}
			continue
		} else if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "ticket key file "+path) && !strings.HasPrefix(err.Error(), path+":") {
			t.Fatalf("cut at byte %d: error %q is not one line naming the file", cut, err)
		}
		if after := r.Keys(); !reflect.DeepEqual(after, before) {
			t.Fatalf("cut at byte %d: refused, yet the ring's keys changed", cut)
		}
	}
	if accepted != 1 { // the header and the first key line, whole
		t.Errorf("%d cuts accepted, want 1 (after the first key line)", accepted)
	}
}

// WriteKeyFile fsyncs the key file's directory after its rename, as
// statefile.Save does, so a crash cannot undo the rename; a new group
// secret file's directory likewise after it is made. A failed fsync is
// reported, naming the file. (syncDir is swapped: the test sees when it
// runs and with what on disk.)
func TestKeyFileWritersSyncDirectory(t *testing.T) {
	real := syncDir
	t.Cleanup(func() { syncDir = real })
	dir := t.TempDir()
	path := filepath.Join(dir, "ticket.keys")
	k1, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	k2, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	writeKeys(t, path, k1)
	var synced []string
	var fail error
	onDisk := -1
	syncDir = func(d string) error {
		synced = append(synced, d)
		keys, _ := ReadKeyFile(path) // what the rename already put there
		onDisk = len(keys)
		for i := range keys {
			keys[i].Erase()
		}
		return fail
	}
	writeKeys(t, path, k1, k2)
	if !slices.Equal(synced, []string{dir}) {
		t.Errorf("WriteKeyFile synced directories %q; want the key file's, %q, once", synced, dir)
	}
	if onDisk != 2 {
		t.Errorf("the directory was synced with %d keys in the file; want it after the rename (2)", onDisk)
	}

	fail = errors.New("input/output error")
	if err := WriteKeyFile(path, []Key{k1}); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("WriteKeyFile with a failing directory fsync: %v; want an error naming %s and the cause", err, path)
	} else if !strings.Contains(err.Error(), "written, but a crash may lose it") || onDisk != 1 {
		t.Errorf("WriteKeyFile with a failing directory fsync: %v, %d keys on disk; want it to say the new file (1 key) is written", err, onDisk)
	}
	// A failure before the rename is not reported as written.
	gone := filepath.Join(dir, "gone", "ticket.keys")
	if err := WriteKeyFile(gone, []Key{k1}); err == nil || !strings.HasPrefix(err.Error(), "ticket key file "+gone+": ") {
		t.Errorf("WriteKeyFile into a missing directory: %v; want \"ticket key file %s: ...\"", err, gone)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "ticket.keys" {
		t.Errorf("after the writes %s holds %d entries; want only ticket.keys, no temporary file", dir, len(ents))
	}

	fail, synced = nil, nil
	g, err := NewGroupSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Zero()
	gpath := filepath.Join(dir, "group.secret")
	syncDir = func(d string) error {
		synced = append(synced, d)
		if _, err := os.Stat(gpath); err != nil {
			t.Errorf("directory synced before the group secret file was made: %v", err)
		}
		return nil
	}
	if err := WriteGroupSecretFile(gpath, g); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(synced, []string{dir}) {
		t.Errorf("WriteGroupSecretFile synced directories %q; want %q, once", synced, dir)
	}

	// The real one, on a real directory.
	if err := real(dir); err != nil {
		t.Errorf("syncDir(%s): %v", dir, err)
	}
}
