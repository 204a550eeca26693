package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"stunnel/conf"
	"stunnel/directory"
	"stunnel/ticketring"
	"stunnel/tickets"
	"stunnel/tunnel"
)

// The [tickets] ring = "etcd" part of `up`: the group's ticket keys come
// from etcd (package ticketring), through the [directory]'s connection
// settings, under its prefix. The directory's dirSync carries the Sync, so
// the status reply and reloads reach it where they reach the directory.

// startTicketRing starts following (and campaigning to rotate) the group's
// ring in etcd; nil, nil unless ring = "etcd". It waits up to
// directoryWait for the first list, so the gateway starts with the group's
// keys; without etcd it starts with none (no tickets issued, full
// handshakes work) and takes them when etcd answers.
func startTicketRing(cfg *conf.Config, ring *tickets.Ring, log *slog.Logger) (*ticketring.Sync, error) {
	t := cfg.Tickets
	if t.Ring != "etcd" || ring == nil {
		return nil, nil
	}
	dc := cfg.Directory
	if dc == nil { // conf refuses this; a guard, not a path
		return nil, fmt.Errorf("[tickets] ring = \"etcd\" needs [directory]")
	}
	tlsCfg, err := directory.TLSConfig(dc)
	if err != nil {
		return nil, err
	}
	secret, err := tickets.ReadGroupSecretFile(t.GroupSecretFile)
	if err != nil {
		return nil, fmt.Errorf("[tickets] group_secret_file: %w", err)
	}
	ttl := t.RotatorTTL
	if ttl <= 0 {
		ttl = conf.DefaultRotatorTTL
	}
	host, _ := os.Hostname()
	s, err := ticketring.Start(ticketring.Options{
		Endpoints: dc.Endpoints, TLS: tlsCfg, Prefix: dc.Prefix, Secret: secret, Ring: ring,
		EncryptDecrypt: t.EncryptDecryptLifetime, DecryptOnly: t.DecryptLifetime, SessionTTL: ttl,
		// Wake at least every tenth of a key's sealing life: short
		// (test) lifetimes rotate on time, long ones cost a read a minute.
		Check:    min(time.Minute, max(t.EncryptDecryptLifetime/10, 100*time.Millisecond)),
		Identity: fmt.Sprintf("%s pid %d", host, os.Getpid()),
		Logger:   log,
	})
	if err != nil {
		secret.Zero()
		return nil, err
	}
	if !s.WaitSynced(directoryWait) {
		log.Warn("ticket ring: etcd did not answer at start; issuing no session tickets until it does (full handshakes work)",
			"endpoints", dc.Endpoints)
	}
	return s, nil
}

// attachRing makes the etcd ring part of the status reply and reloads.
func (s *dirSync) attachRing(rs *ticketring.Sync, started conf.Tickets) {
	s.ring, s.ringCfg = rs, started
}

// reloadRing applies a reloaded [tickets] to the etcd ring: the lifetimes
// of keys added from now on; the rest waits for a restart (said once per
// reload). Nil-safe.
func (s *dirSync) reloadRing(cfg *conf.Config) {
	if s == nil || s.ring == nil {
		return
	}
	t := cfg.Tickets
	s.ring.SetLifetimes(t.EncryptDecryptLifetime, t.DecryptLifetime)
	if t.Ring != s.ringCfg.Ring || t.GroupSecretFile != s.ringCfg.GroupSecretFile || t.RotatorTTL != s.ringCfg.RotatorTTL {
		s.log.Warn("reload: [tickets] ring, group_secret_file and rotator_ttl changes take effect at the next restart")
	}
}

func ticketRingStatus(s *ticketring.Sync) *tunnel.TicketRingStatus {
	st := s.Status()
	return &tunnel.TicketRingStatus{Role: st.Role, Rotator: st.Rotator, State: st.State, Keys: st.Keys,
		Refused: st.Refused, RefusedTotal: st.RefusedTotal, Added: st.Added, Deleted: st.Deleted,
		LastSync: st.LastSync, LastError: st.LastError}
}

func writeTicketRing(w io.Writer, r *tunnel.TicketRingStatus, now time.Time) {
	sync := "never"
	if !r.LastSync.IsZero() {
		sync = ago(now.Sub(r.LastSync))
	}
	fmt.Fprintf(w, "  ticket ring: etcd, %s (rotator: %s), %s, last sync %s, %d keys, %d refused records, %d added and %d deleted here\n",
		r.Role, orNone(printable(r.Rotator)), r.State, sync, r.Keys, r.Refused, r.Added, r.Deleted)
	if r.LastError != "" && r.State != "connected" {
		fmt.Fprintf(w, "  ticket ring error: %s\n", r.LastError)
	}
}
