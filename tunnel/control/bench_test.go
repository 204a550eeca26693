package control

import "testing"

// BenchmarkStatusQuery: one `show` exchange over the socket: connect, HTTP
// request, credentials, role check, reply.
func BenchmarkStatusQuery(b *testing.B) {
	d := b.TempDir() + "/run"
	b.Setenv(RunDirEnv, d)
	s, err := Listen(Config{Name: "st0", Handlers: statusOnly(`{"name":"st0"}`)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		if _, err := Query(s.Path(), "status", ""); err != nil {
			b.Fatal(err)
		}
	}
}
