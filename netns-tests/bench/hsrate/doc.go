// Package hsrate measures handshakes per second per core on the responder
// side, for stunnel (full and resumed) and for wireguard-go (full), the same
// way for all three (issue 21, target 5). It has no code of its own outside
// the benchmarks:
//
//	GOMAXPROCS=1 go test -run '^$' -bench . -cpu 1 ./netns-tests/bench/hsrate/
//
// Each benchmark keeps 256 initiator identities and one responder with 1,000
// configured peers. In batches of 64, the initiators' messages are built with
// the timers stopped; then the responder's whole answer is timed, as its
// daemon runs it after the message left the UDP socket: the mac1 check, the
// message (for a resumption: opening the ticket first), the response with
// its MACs, and installing the new keypair under a fresh index. stunnel's
// responder also seals the ticket it will give the initiator (tickets are on
// by default), so a resumption's cost includes the next ticket. Not timed:
// the socket I/O and the queue hand-offs, which both daemons have.
//
// The figure is handshakes per second of the benchmark thread's CPU time
// (handshakes/cpu-s: independent of other load on a shared machine), next
// to handshakes per second of wall time. Each identity is used at most once
// per 25 ms: both responders refuse a second initiation of one peer within
// 20 ms (flood protection), and wireguard-go's timestamps tick every 16 ms.
package hsrate
