package netnstests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/netns"
	"stunnel/internal/roottest"
)

// account is an unprivileged unix user made for one test.
type account struct {
	name     string
	uid, gid uint32
	groups   []uint32 // supplementary, as a login would have them
}

// unixGroup makes a group with a unique name, removed when the test ends.
func unixGroup(t *testing.T, name string) uint32 {
	t.Helper()
	if out, err := exec.Command("groupadd", name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("groupdel", name).CombinedOutput(); err != nil {
			t.Errorf("cleanup: groupdel %s: %v: %s", name, err, out)
		}
	})
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(gid)
}

// unixUser makes a user without home or login shell, in the group "users"
// and in the supplementary groups given; removed when the test ends.
func unixUser(t *testing.T, name string, groups ...string) account {
	t.Helper()
	args := []string{"-M", "-N", "-g", "users", "-s", "/usr/sbin/nologin"}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("cleanup: userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	a := account{name: name, uid: uint32(uid), gid: uint32(gid)}
	ids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		n, _ := strconv.ParseUint(id, 10, 32)
		a.groups = append(a.groups, uint32(n))
	}
	return a
}

// copyBinary puts stunnel into dir, a roottest.PublicDir: outside the
// test's 0700 temp dir, so the unprivileged users can reach the binary and
// the sockets beside it.
func copyBinary(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "stunnel")
	roottest.CopyExecutable(t, stunnelBin, path)
	return path
}

// runAs runs the stunnel CLI as acct (nil: root) against runDir.
func runAs(bin, runDir string, acct *account, args ...string) (code int, stdout, stderr string) {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "STUNNEL_RUN_DIR=" + runDir}
	cmd.Dir = "/"
	if acct != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: acct.uid, Gid: acct.gid, Groups: acct.groups}}
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return exitCode(err), o.String(), e.String()
}

func fileOwner(t *testing.T, path string) (mode os.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode(), st.Uid, st.Gid
}

// TestControlRoles: unix users in the read, operate and officer groups (and
// one in none) run every control command against a real daemon. The right
// roles succeed, the others are refused with the role and group named, the
// user in no group cannot connect at all, and every request that reached
// the daemon left its audit line. The socket directory and files have the
// modes and owners that make this so.
func TestControlRoles(t *testing.T) {
	l := newLab(t)
	var rnd [3]byte
	rand.Read(rnd[:])
	tag := "stc" + hex.EncodeToString(rnd[:]) // unique per run: parallel runs exist
	grp := map[string]string{"read": tag + "r", "operate": tag + "o", "officer": tag + "k"}
	gid := map[string]uint32{}
	for role, g := range grp {
		gid[role] = unixGroup(t, g)
	}
	users := map[string]account{
		"reader":   unixUser(t, tag+"-rd", grp["read"]),
		"operator": unixUser(t, tag+"-op", grp["operate"]),
		"officer":  unixUser(t, tag+"-of", grp["officer"]),
		"nobody":   unixUser(t, tag+"-no"),
	}
	pub := roottest.PublicDir(t, "stunnel-roles-")
	bin := copyBinary(t, pub)
	runDir := filepath.Join(pub, "run")

	a, b := l.twoHosts(func(a, b *node) {
		a.runDir = runDir
		a.Extra = fmt.Sprintf("[control]\nread_group = %q\noperate_group = %q\nofficer_group = %q\n",
			grp["read"], grp["operate"], grp["officer"])
	})
	pingUntil(t, a.ns, overB, sessionWait)
	a.waitSession(b.ID, sessionWait)

	// The socket directory and files.
	if mode, uid, _ := fileOwner(t, runDir); mode != os.ModeDir|0o755 || uid != 0 {
		t.Errorf("run dir: mode %v uid %d, want drwxr-xr-x root", mode, uid)
	}
	for role, name := range map[string]string{"read": "st0.sock", "operate": "st0:operate.sock", "officer": "st0:officer.sock"} {
		mode, uid, g := fileOwner(t, filepath.Join(runDir, name))
		if mode != os.ModeSocket|0o660 || uid != 0 || g != gid[role] {
			t.Errorf("%s: mode %v uid %d gid %d, want srw-rw---- root:%s (%d)", name, mode, uid, g, grp[role], gid[role])
		}
	}

	// rekey as the operator really starts a handshake on fresh keys, and
	// disconnect really drops the session (the next packet makes a new one).
	before := a.peer(b.ID)
	op := users["operator"]
	if code, _, errs := runAs(bin, runDir, &op, "rekey", "-i", devName, b.ID); code != 0 {
		t.Fatalf("rekey as operator: exit %d: %s", code, errs)
	}
	waitFor(t, sessionWait, "the rekey's handshake", func() bool {
		p := a.peer(b.ID)
		return p.Handshakes > before.Handshakes && p.SessionID != "" && p.SessionID != before.SessionID
	})
	if code, _, errs := runAs(bin, runDir, &op, "disconnect", "-i", devName, b.ID); code != 0 {
		t.Fatalf("disconnect as operator: exit %d: %s", code, errs)
	}
	if p := a.peer(b.ID); p.SessionID != "" {
		t.Errorf("session %s still current after disconnect", p.SessionID)
	}
	pingUntil(t, a.ns, overB, sessionWait)

	type want struct {
		ok  bool   // exit 0
		msg string // else stderr, after "stunnel CMD: "
	}
	denied := func(role string) want {
		g := grp[role]
		if role == "read" {
			g += " or " + grp["operate"]
		}
		return want{msg: fmt.Sprintf("permission denied: needs the %s role (group %s)", role, g)}
	}
	noKey := want{msg: "no ticket key named k1"} // retire of a key the ring does not have
	ok := want{ok: true}
	commands := []struct {
		name  string // as in the audit log
		args  []string
		audit bool // allowed requests audited (reads are not)
		who   map[string]want
	}{
		{"status", []string{"show", "--json", "-i", devName}, false,
			map[string]want{"root": ok, "reader": ok, "operator": ok, "officer": denied("read")}},
		{"metrics", []string{"show", "--metrics", "-i", devName}, false,
			map[string]want{"root": ok, "reader": ok, "operator": ok, "officer": denied("read")}},
		{"rekey", []string{"rekey", "-i", devName, b.ID}, true,
			map[string]want{"root": ok, "reader": denied("operate"), "operator": ok, "officer": denied("operate")}},
		{"disconnect", []string{"disconnect", "-i", devName, b.ID}, true,
			map[string]want{"root": ok, "reader": denied("operate"), "operator": ok, "officer": denied("operate")}},
		{"reload", []string{"reload", "-i", devName}, true,
			map[string]want{"root": ok, "reader": denied("operate"), "operator": ok, "officer": denied("operate")}},
		{"state save", []string{"state", "save", "-i", devName}, true,
			map[string]want{"root": ok, "reader": denied("operate"), "operator": ok, "officer": denied("operate")}},
		{"tickets list", []string{"tickets", "list", "-i", devName}, true,
			map[string]want{"root": ok, "reader": denied("officer"), "operator": denied("officer"), "officer": ok}},
		{"tickets add", []string{"tickets", "add", "-i", devName}, true,
			map[string]want{"root": ok, "reader": denied("officer"), "operator": denied("officer"), "officer": ok}},
		{"tickets retire", []string{"tickets", "retire", "-i", devName, "k1"}, true,
			map[string]want{"root": noKey, "reader": denied("officer"), "operator": denied("officer"), "officer": noKey}},
	}
	type auditWant struct {
		uid          uint32
		command, arg string
		outcome      string
	}
	audits := []auditWant{{op.uid, "rekey", b.ID, "ok"}, {op.uid, "disconnect", b.ID, "ok"}}
	for _, c := range commands {
		cli := strings.Join(c.args[:1], "")
		if c.args[0] == "state" || c.args[0] == "tickets" {
			cli = c.args[0] + " " + c.args[1]
		}
		arg := ""
		if last := c.args[len(c.args)-1]; last == b.ID || last == "k1" {
			arg = last
		}
		for _, who := range []string{"root", "reader", "operator", "officer", "nobody"} {
			var acct *account
			var uid uint32
			if who != "root" {
				u := users[who]
				acct, uid = &u, u.uid
			}
			code, out, errs := runAs(bin, runDir, acct, c.args...)
			if who == "nobody" {
				// In no group: the socket files do not let it connect.
				if code != 1 || !strings.HasPrefix(errs, "stunnel "+cli+": permission denied: cannot connect to the control socket") {
					t.Errorf("%s as %s: exit %d, stderr %q; want exit 1, cannot connect", c.name, who, code, errs)
				}
				continue
			}
			w := c.who[who]
			switch {
			case w.ok && code != 0:
				t.Errorf("%s as %s: exit %d, stderr %q; want success", c.name, who, code, errs)
			case !w.ok && (code != 1 || errs != "stunnel "+cli+": "+w.msg+"\n" || out != ""):
				t.Errorf("%s as %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.name, who, code, out, errs, "stunnel "+cli+": "+w.msg)
			}
			switch {
			case w.ok && c.audit:
				audits = append(audits, auditWant{uid, c.name, arg, "ok"})
			case !w.ok && strings.HasPrefix(w.msg, "permission denied"):
				audits = append(audits, auditWant{uid, c.name, arg, "refused: " + w.msg})
			case !w.ok:
				audits = append(audits, auditWant{uid, c.name, arg, "failed: " + w.msg})
			}
			if c.name == "metrics" && w.ok && !strings.Contains(out, `stunnel_peer_receive_bytes_total{interface="st0",peer="host-b"}`) {
				t.Errorf("metrics as %s: no byte counter in\n%.500s", who, out)
			}
		}
	}

	// Every request that reached the daemon: one audit line each, with
	// the caller's uid, gid and pid, the command, its argument, the outcome.
	var lines []string
	for _, line := range strings.Split(a.log(), "\n") {
		if strings.Contains(line, "msg=audit ") {
			lines = append(lines, line)
		}
	}
	if len(lines) != len(audits) {
		t.Errorf("%d audit lines, want %d:\n%s", len(lines), len(audits), strings.Join(lines, "\n"))
	}
	same := map[auditWant]int{}
	for _, w := range audits {
		same[w]++
	}
	for w, n := range same {
		found := 0
		for _, line := range lines {
			if strings.Contains(line, fmt.Sprintf(" uid=%d gid=", w.uid)) && strings.Contains(line, " pid=") &&
				strings.Contains(line, " command="+slogText(w.command)+" ") &&
				strings.Contains(line, " arg="+slogText(w.arg)+" ") &&
				strings.Contains(line, " outcome="+slogText(w.outcome)) {
				found++
			}
		}
		if found != n {
			t.Errorf("audit line for uid %d %s %q %q: found %d, want %d", w.uid, w.command, w.arg, w.outcome, found, n)
		}
	}

	// The allowed actions did what they say: a reload was logged, and
	// after the disconnects the tunnel comes back by itself.
	if !strings.Contains(a.log(), "configuration reloaded") {
		t.Error("no reload in the daemon's log")
	}
	pingUntil(t, a.ns, overB, sessionWait)
}

// slogText is how slog's text handler writes a string value.
func slogText(s string) string {
	if s == "" || strings.ContainsAny(s, " \"=") {
		return strconv.Quote(s)
	}
	return s
}

// TestControlSocketStaleAndPlanted: a daemon killed with SIGKILL leaves its
// sockets; the next one replaces them. A symlink planted at the socket path
// is not followed: the daemon refuses to start and the link's target is
// untouched.
func TestControlSocketStaleAndPlanted(t *testing.T) {
	l := newLab(t)
	ns := l.ns("a")
	pub := roottest.PublicDir(t, "stunnel-sock-")
	n := l.newNode(ns, "host-a", "198.18.1.1/24", overA+"/24")
	n.runDir = filepath.Join(pub, "run")
	n.Peers = []peerConf{{ID: "host-b", PublicKey: newKeyPair(t).public, AllowedIPs: []string{overB + "/32"}}}
	n.start()
	sock := filepath.Join(n.runDir, "st0.sock")
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("a killed daemon should leave its socket behind: %v", err)
	}
	waitFor(t, 10*time.Second, "the killed daemon's TUN device to go", func() bool { return !n.hasDevice() })
	n.start() // waits until show answers through the new socket
	if code := n.stop(); code != 0 {
		t.Errorf("restarted daemon exited %d", code)
	}

	// A symlink at the socket path, pointing at a file the daemon could
	// otherwise clobber.
	victim := filepath.Join(pub, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, sock); err != nil {
		t.Fatal(err)
	}
	n.writeConfig()
	cmd := netns.Exec(ns, stunnelBin, "up", "-c", n.cfgPath)
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+n.runDir)
	out, code := upMustFail(t, cmd)
	if code != 1 || !strings.Contains(out, "is a symlink, not a socket: not following it") {
		t.Errorf("up over a planted symlink: exit %d, output:\n%s", code, out)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the planted symlink was touched: %v", err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("the symlink's target was touched: %q %v", b, err)
	}
	if n.hasDevice() {
		t.Error("the refused daemon left its TUN device")
	}
}
