package tickets

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// recordingReader serves data in small chunks, as a slow file or pipe
// would, and keeps every buffer it was given to read into: after the read
// and the caller's clear, none of them may still hold a byte of the secret.
type recordingReader struct {
	data  []byte
	chunk int
	err   error // after data: this instead of io.EOF
	seen  [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	r.seen = append(r.seen, p)
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func (r *recordingReader) leftover() bool {
	for _, p := range r.seen {
		if bytes.ContainsAny(p, "s") {
			return true
		}
	}
	return false
}

// readSecret reads a key file into one array: io.ReadAll, as it read
// before, grew its buffer and left each array it outgrew holding the key
// lines read so far. On success the caller's clear reaches every byte
// read; on an error (a read failing halfway, a file over the limit)
// readSecret clears them itself.
func TestReadSecretLeavesNoCopy(t *testing.T) {
	const limit = 4096
	secret := bytes.Repeat([]byte("s"), 3000) // larger than ReadAll's first buffer
	for _, c := range []struct {
		name    string
		data    []byte
		err     error
		wantErr string
	}{
		{"whole file", secret, nil, ""},
		{"read fails halfway", secret, errors.New("EIO"), "EIO"},
		{"too large", bytes.Repeat([]byte("s"), limit+100), nil, "larger than"},
	} {
		r := &recordingReader{data: c.data, chunk: 100, err: c.err}
		got, err := readSecret(r, "ticket key file", "F", limit)
		switch {
		case c.wantErr == "" && (err != nil || len(got) != len(c.data)):
			t.Fatalf("%s: %d bytes, %v", c.name, len(got), err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr) || got != nil):
			t.Fatalf("%s: %d bytes, %v; want an error saying %q", c.name, len(got), err, c.wantErr)
		}
		clear(got) // what ReadKeyFile does once it has parsed them
		if r.leftover() {
			t.Fatalf("%s: a buffer the file was read into still holds its bytes", c.name)
		}
	}
}

// ParseKeyFile parses the keys in place in one array sized for the key
// lines (comments and blank lines are not keys): appending them, as it did,
// moved the keys parsed so far to a larger array at the third key and left
// the old one with their secrets.
func TestParseKeyFileKeepsKeysInOneArray(t *testing.T) {
	var ks []Key
	for i := range 3 {
		k, _ := GenerateKey(nil, t0.Add(time.Duration(i)*time.Minute), time.Hour, time.Hour)
		ks = append(ks, k)
	}
	defer eraseAll(ks)
	data := append(MarshalKeyFile(ks), "\n# a note\n\n"...)
	defer clear(data)
	keys, err := ParseKeyFile("F", data)
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	defer eraseAll(keys)
	if cap(keys) != len(keys) {
		t.Fatalf("%d keys in an array of %d: not one array sized for them", len(keys), cap(keys))
	}
	for i := range keys {
		if keys[i].secret != ks[i].secret {
			t.Fatalf("key %d: secret differs after the round trip", i)
		}
	}
}

// MarshalKeyFile writes the file into one array of its exact size: a
// growing buffer (bytes.Buffer, as before) left every array it outgrew
// holding the secrets written so far.
func TestMarshalKeyFileWritesOneArray(t *testing.T) {
	var ks []Key
	for i := range 5 {
		k, _ := GenerateKey(nil, t0.Add(time.Duration(i)*time.Minute), 90*time.Minute, 13*time.Hour)
		ks = append(ks, k)
	}
	defer eraseAll(ks)
	data := MarshalKeyFile(ks)
	defer clear(data)
	if cap(data) != len(data) {
		t.Fatalf("%d bytes in an array of %d", len(data), cap(data))
	}
}

func eraseAll(keys []Key) {
	for i := range keys {
		keys[i].Erase()
	}
}
