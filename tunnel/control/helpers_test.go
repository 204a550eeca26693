package control

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"sync"
)

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

func itoa(n int) string { return strconv.Itoa(n) }

// syncWriter lets the server's goroutines log into one buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// String is what was written, if w is a bytes.Buffer.
func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(*bytes.Buffer).String()
}
