package sdfd

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseListen(t *testing.T) {
	self := 1234
	for _, c := range []struct {
		pid, n, names string
		want          map[string][]int
		err           bool
	}{
		{"", "", "", map[string][]int{}, false},
		{"999", "3", "tun:udp4:udp6", map[string][]int{}, false}, // another process's
		{"1234", "0", "", map[string][]int{}, false},
		{"1234", "3", "tun:udp4:udp6", map[string][]int{"tun": {3}, "udp4": {4}, "udp6": {5}}, false},
		{"1234", "2", "tun", map[string][]int{"tun": {3}, "unknown": {4}}, false},
		{"1234", "2", "x:x", map[string][]int{"x": {3, 4}}, false},
		{"abc", "1", "", nil, true},
		{"1234", "-1", "", nil, true},
		{"1234", "99999", "", nil, true},
		{"1234", "", "", map[string][]int{}, false},
		{"1234", "x", "", nil, true},
	} {
		got, err := parseListen(c.pid, c.n, c.names, self)
		if (err != nil) != c.err {
			t.Fatalf("parseListen(%q, %q, %q) error = %v, want error %v", c.pid, c.n, c.names, err, c.err)
		}
		if !c.err && !reflect.DeepEqual(got, c.want) {
			t.Fatalf("parseListen(%q, %q, %q) = %v, want %v", c.pid, c.n, c.names, got, c.want)
		}
	}
}

func TestNotifyWithoutSystemdIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if ok, err := Store("tun", 0); ok || err != nil {
		t.Fatalf("Store without NOTIFY_SOCKET = %v, %v; want false, nil", ok, err)
	}
}

func TestStoreRefusesBadNames(t *testing.T) {
	for _, n := range []string{"", "a:b", "a b", strings.Repeat("x", 256), "tün"} {
		if _, err := Store(n, 0); err == nil {
			t.Fatalf("Store(%q) accepted a name systemd refuses", n)
		}
	}
	if _, err := Store("tun"); err == nil {
		t.Fatal("Store with no descriptors accepted")
	}
}

// standIn is the notify half of systemd: a unixgram socket that collects
// messages and the descriptors they carry.
type standIn struct {
	c    *net.UnixConn
	path string
}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &standIn{c: c, path: path}
}

// receive returns the next message's fields and descriptors.
func (s *standIn) receive(t *testing.T) (map[string]string, []int) {
	t.Helper()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*64))
	n, oobn, _, _, err := s.c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(buf[:n]), "\n") {
		k, v, _ := strings.Cut(l, "=")
		fields[k] = v
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, got...)
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
		t.Cleanup(func() { unix.Close(fd) })
	}
	return fields, fds
}

func TestStoreSendsDescriptors(t *testing.T) {
	s := newStandIn(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if ok, err := Store("pipe", int(w.Fd())); !ok || err != nil {
		t.Fatalf("Store = %v, %v", ok, err)
	}
	fields, fds := s.receive(t)
	if fields["FDSTORE"] != "1" || fields["FDNAME"] != "pipe" || len(fds) != 1 {
		t.Fatalf("stand-in got %v with %d fds", fields, len(fds))
	}
	// The stored copy is the same open file: what it writes, r reads.
	w.Close()
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if n, _ := r.Read(b); n != 1 || b[0] != 'x' {
		t.Fatal("stored descriptor is not the same pipe")
	}
	if ok, err := Remove("pipe"); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	if fields, fds := s.receive(t); fields["FDSTOREREMOVE"] != "1" || fields["FDNAME"] != "pipe" || len(fds) != 0 {
		t.Fatalf("stand-in got %v with %d fds", fields, len(fds))
	}
}
