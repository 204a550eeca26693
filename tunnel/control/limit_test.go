package control

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestOneRequestPerConnection: the server closes a connection after one
// reply even if the client asks to keep it: with keep-alive, a request now
// and then would hold the connection forever.
func TestOneRequestPerConnection(t *testing.T) {
	noLeaks(t)
	runDir(t)
	s := listen(t, "st0", statusOnly(`"up"`))
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const req = "GET /v1/status HTTP/1.1\r\nHost: stunnel\r\n\r\n" // no "Connection: close"
	io.WriteString(c, req)
	br := bufioReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Error("the reply does not say Connection: close")
	}
	io.WriteString(c, req) // may fail: the server has closed
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("a second request on one connection was answered: %s", resp.Status)
	}
}
