// Package tundev is a Linux TUN device with virtio-net offloads that
// implements golang.zx2c4.com/wireguard/tun.Device, written for this
// project from the kernel interfaces (virtio_net_hdr, TUNSETOFFLOAD).
//
// The fd is non-blocking and read(2) and writev(2) are raw system calls
// (internal/nbsys), so a packet neither parks a goroutine nor wakes the
// runtime's sysmon thread. When read(2) says EAGAIN, the reader sleeps in
// the netpoller on an epoll of the fd and an eventfd
// (internal/busypoll.Sleeper): a thread blocked in poll(2) would keep sysmon
// awake, which costs more than the park/unpark at a few hundred packets per
// second. Close writes the eventfd to wake it.
//
// Read splits the kernel's TCP and UDP GSO super-packets into ordinary
// packets with complete checksums (they leave the host through the tunnel
// and the far side may forward them). Write coalesces consecutive in-order
// segments of one flow into one GSO frame, written with one writev(2) whose
// iovecs point at the payloads where they lie: no copy.
//
// Checksums on Write are not verified. Every packet Write sees was just
// authenticated by the tunnel's AEAD, so its bytes are exactly what the peer
// sent; like the Linux kernel's WireGuard, which marks decrypted packets
// CHECKSUM_UNNECESSARY, we skip software verification. TCP and UDP packets
// go to the kernel with NEEDS_CSUM and the pseudo-header sum in the checksum
// field (CHECKSUM_PARTIAL), so the kernel fills the real checksum in itself
// if it forwards the packet on. Everything else (ICMP, fragments, IPv6 with
// extension headers, malformed bytes) is written as is with a zero header,
// and the kernel drops what it cannot parse.
//
// The pure offload logic (virtio header, split, coalescing plan, checksums)
// is platform independent; the syscalls are in *_linux.go.
package tundev
