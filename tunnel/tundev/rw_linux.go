package tundev

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"stunnel/internal/nbsys"
)

// Read reads packets into bufs[i][offset:], their lengths into sizes[i], and
// returns how many. It blocks in poll(2) until at least one frame arrives or
// Close starts (then os.ErrClosed), and after the first frame reads more
// only while the kernel has them ready. GSO frames are split into packets;
// a frame whose packets do not all fit in the bufs left is kept in the
// device and handed out over the next calls, never dropped. A malformed
// frame is dropped with an error (returned at once, or on the next call if
// packets were already read). offset must be at least 10: the virtio header
// is read into bufs[i][offset-10:offset]. One goroutine at a time, and never
// at the same time as ReadReady.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.read(bufs, sizes, offset, true)
}

// ReadReady is Read without the wait: it returns 0 and no error when
// nothing is queued. It lets two goroutines share the reading (the tunnel's
// TUN reader, and a UDP reader picking up the reply its own write just
// caused) as long as the caller serializes ReadReady calls; only
// WaitReadable may run beside it.
func (d *Device) ReadReady(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.read(bufs, sizes, offset, false)
}

// WaitReadable blocks until the kernel has a frame queued, or a frame that
// did not fit was held over by ReadReady (so a reader never sleeps on a
// held frame another goroutine left behind), or Close started
// (os.ErrClosed). One goroutine at a time.
func (d *Device) WaitReadable() error {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed.Load() {
		return os.ErrClosed
	}
	if d.held.Load() {
		return nil
	}
	return d.waitReadable()
}

func (d *Device) read(bufs [][]byte, sizes []int, offset int, block bool) (int, error) {
	if offset < virtioHdrLen {
		return 0, errOffset
	}
	d.life.RLock()
	defer d.life.RUnlock()
	defer d.updateHeld()
	if d.closed.Load() {
		return 0, os.ErrClosed
	}
	if err := d.pendErr; err != nil {
		d.pendErr = nil
		return 0, err
	}
	nb := min(len(bufs), len(sizes))
	bufs, sizes = bufs[:nb], sizes[:nb]
	count := 0
	if d.pendNext < d.pend.nseg {
		k, err := d.pend.splitInto(d.pendNext, bufs, sizes, offset)
		d.pendNext += k
		if err != nil || d.pendNext == d.pend.nseg {
			d.pend, d.pendNext = gsoFrame{}, 0
		}
		d.stats.readSegs.Add(uint64(k))
		if err != nil || d.pendNext != 0 {
			return k, err
		}
		count = k
	}
	var frames, gso, segs uint64
	defer func() {
		d.stats.readFrames.Add(frames)
		d.stats.readGSO.Add(gso)
		d.stats.readSegs.Add(segs)
	}()
	for count < nb {
		head := d.setReadIov(bufs[count][offset-virtioHdrLen:])
		m, errno := nbsys.Readv(d.fd, d.readIov[:])
		if errno != 0 {
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				if count > 0 || !block {
					return count, nil
				}
				if err := d.waitReadable(); err != nil {
					return 0, err
				}
				continue
			}
			return count, d.deferErr(count, fmt.Errorf("tundev: reading %s: %w", d.name, errno))
		}
		frames++
		if m < virtioHdrLen {
			return count, d.bad(count, fmt.Errorf("tundev: reading %s: %d-byte frame", d.name, m))
		}
		buf, inFrame := head, m > len(head)
		if inFrame {
			copy(d.frame, head)
			buf = d.frame
		}
		h := decodeVirtioHdr(buf)
		pkt := buf[virtioHdrLen:m]
		if h.gsoType == gsoNone {
			if h.flags&virtioFlagNeedsCsum != 0 {
				if err := finishChecksum(h, pkt); err != nil {
					return count, d.bad(count, err)
				}
			}
			if inFrame {
				// Longer than the MTU the device was made with (it was
				// raised since): hand it over all the same.
				if len(pkt) > len(bufs[count])-offset {
					return count, d.bad(count, fmt.Errorf("tundev: reading %s: %d-byte packet, longer than the %d-byte buffer", d.name, len(pkt), len(bufs[count])-offset))
				}
				copy(bufs[count][offset:], pkt)
			}
			sizes[count] = len(pkt)
			count++
			continue
		}
		f, err := parseGSO(h, pkt)
		if err != nil {
			return count, d.bad(count, err)
		}
		gso++
		if f.nseg > nb-count {
			// Not all fit: keep the frame for the next calls, in d.frame,
			// which is not read into again before they took all of it.
			if !inFrame {
				f.pkt = d.frame[:copy(d.frame, pkt)]
			}
			d.pend, d.pendNext = f, 0
			d.stats.readHeld.Add(1)
		}
		k, err := f.splitInto(0, bufs[count:], sizes[count:], offset)
		if err != nil {
			d.pend = gsoFrame{}
			return count, d.bad(count, err)
		}
		segs += uint64(k)
		count += k
		if d.pend.nseg != 0 {
			d.pendNext = k
			break
		}
	}
	return count, nil
}

// setReadIov points the read's iovecs at buf, up to the MTU, and at the
// rest of d.frame, and returns that part of buf. A lone packet thus lands
// in the caller's buffer, where it is handed out, and the bulk of a GSO
// super-packet in d.frame, one buffer that stays in cache: read into a pool
// buffer whose 64 KiB have gone cold since it last held a frame, the kernel's
// copy of a 64 KiB frame took 8 us, into d.frame 6 us (median, one TCP
// stream; docs/PERFORMANCE.md). The split copies every segment out of it.
func (d *Device) setReadIov(buf []byte) []byte {
	head := buf[:min(len(buf), virtioHdrLen+d.mtu, len(d.frame))]
	d.readIov[0] = unix.Iovec{Base: &head[0]}
	d.readIov[0].SetLen(len(head))
	tail := d.frame[len(head):]
	d.readIov[1] = unix.Iovec{Base: unsafe.SliceData(tail)}
	d.readIov[1].SetLen(len(tail))
	return head
}

// updateHeld publishes whether a held frame or error waits for the next
// read, and kicks a reader that may be asleep in WaitReadable when one
// appeared: the kernel would not wake it, since the frame already left its
// queue.
func (d *Device) updateHeld() {
	held := d.pendNext < d.pend.nseg || d.pendErr != nil
	if d.held.Swap(held) || !held {
		return
	}
	var one = [8]byte{1}
	_, _ = unix.Write(d.kickFd, one[:]) // only fails if the counter is full, and then a kick is pending anyway
}

// bad counts a dropped frame and reports err now or, when packets were
// already read, on the next call.
func (d *Device) bad(count int, err error) error {
	d.stats.badFrames.Add(1)
	return d.deferErr(count, err)
}

func (d *Device) deferErr(count int, err error) error {
	if count == 0 {
		return err
	}
	d.pendErr = err
	return nil
}

// Write writes the packets bufs[i][offset:], coalescing runs of one TCP (or,
// with USO, UDP) flow into GSO frames, and returns len(bufs) and the first
// error; a failed packet does not stop the others. It uses
// bufs[i][offset-10:offset] for virtio headers and rewrites packet headers
// in place. Safe for concurrent use (serialised inside).
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if offset < virtioHdrLen {
		return 0, errOffset
	}
	for i, b := range bufs {
		if len(b) < offset {
			return 0, fmt.Errorf("tundev: writing to %s: buffer %d is %d bytes, shorter than the offset %d", d.name, i, len(b), offset)
		}
	}
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed.Load() {
		return 0, os.ErrClosed
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	p := &d.plan
	p.plan(bufs, offset)
	var firstErr error
	var groups, coalesced uint64
	for gi := range p.groups {
		g := &p.groups[gi]
		h := p.prepare(g, bufs, offset)
		frame := bufs[g.first][offset-virtioHdrLen:]
		h.encode(frame)
		iov := append(d.iov[:0], iovec(frame))
		if g.n > 1 {
			groups++
			coalesced += uint64(g.n)
			for j := p.next[g.first]; j >= 0; j = p.next[j] {
				iov = append(iov, iovec(bufs[j][offset+p.info[j].hdrLen:]))
			}
		}
		d.iov = iov
		if err := d.writev(iov); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if err == os.ErrClosed {
				break
			}
		}
	}
	clear(d.iov[:cap(d.iov)]) // drop references to the caller's buffers
	d.stats.writePkts.Add(uint64(len(bufs)))
	d.stats.writeGroups.Add(groups)
	d.stats.writeCoalesced.Add(coalesced)
	return len(bufs), firstErr
}

func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return v
}

// writev writes one frame, waiting in poll(2) if the kernel pushes back.
// (unix.Writev would allocate its iovec slice on every call, and wake sysmon:
// internal/nbsys.)
func (d *Device) writev(iov []unix.Iovec) error {
	for {
		_, e := nbsys.Writev(d.fd, iov)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := d.wait(d.writePoll[:], nil); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("tundev: writing to %s: %w", d.name, e)
	}
}
