// Package contrib holds the files installed next to the binary (the systemd
// unit, install.sh); its tests run `make install` and `make uninstall` into
// a temporary DESTDIR, as a new user's `sudo make install` would.
package contrib

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"stunnel/internal/roottest"
)

// makeIn runs make in the repository root with the given variables.
func makeIn(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	roottest.RequireTool(t, "make", "make")
	cmd := exec.Command("make", append([]string{"-s", "-C", ".."}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "GO="+filepath.Join(runtime.GOROOT(), "bin", "go"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return fi.Mode()
}

func TestMakeInstallUninstall(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "dest")
	vars := []string{"DESTDIR=" + dest, "BIN=" + filepath.Join(dir, "build", "stunnel"), "SYSROOT=" + filepath.Join(dir, "sys"), "DPKG=false"}
	out, err := makeIn(t, nil, append([]string{"install"}, vars...)...)
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, "usr/local/bin/stunnel")
	unit := filepath.Join(dest, "etc/systemd/system/stunnel@.service")
	confDir := filepath.Join(dest, "etc/stunnel")
	if m := mode(t, bin); m.Perm() != 0o755 {
		t.Errorf("binary mode %v, want 0755", m)
	}
	if m := mode(t, unit); m.Perm() != 0o644 {
		t.Errorf("unit mode %v, want 0644", m)
	}
	if m := mode(t, confDir); !m.IsDir() || m.Perm() != 0o700 {
		t.Errorf("/etc/stunnel mode %v, want a 0700 directory", m)
	}
	if v, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(v), "stunnel ") {
		t.Errorf("installed binary: version: %v %q", err, v)
	}
	u, _ := os.ReadFile(unit)
	if !strings.Contains(string(u), "ExecStart=/usr/local/bin/stunnel up -c /etc/stunnel/%i.toml") {
		t.Errorf("installed unit does not run the installed binary on /etc/stunnel/%%i.toml:\n%s", u)
	}

	// Installing again over our own files is fine.
	if out, err := makeIn(t, nil, append([]string{"install"}, vars...)...); err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}

	// Uninstall keeps /etc/stunnel while it holds a key.
	key := filepath.Join(confDir, "a.key")
	if err := os.WriteFile(key, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = makeIn(t, nil, append([]string{"uninstall"}, vars...)...)
	if err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	for _, p := range []string{bin, unit} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after uninstall (%v)", p, err)
		}
	}
	if _, err := os.Stat(key); err != nil || !strings.Contains(out, "kept") {
		t.Errorf("uninstall removed the key or did not say it kept %s: %v\n%s", confDir, err, out)
	}
}

// With Debian's stunnel4 present, install refuses (and installs nothing)
// unless the unit gets another name; a unit file that is not ours is never
// overwritten.
func TestMakeInstallRefusesToClobberStunnel4(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string) []string
	}{
		{"unit of another package", func(t *testing.T, dir string) []string {
			p := filepath.Join(dir, "sys/lib/systemd/system/stunnel@.service")
			writeFile(t, p, "[Service]\nExecStart=/usr/bin/stunnel /etc/stunnel/%i.conf\n")
			return []string{"DPKG=false"}
		}},
		{"dpkg owns /usr/bin/stunnel", func(t *testing.T, dir string) []string {
			fake := filepath.Join(dir, "fake-dpkg")
			writeFile(t, fake, "#!/bin/sh\n[ \"$1 $2\" = \"-S /usr/bin/stunnel\" ] && echo 'stunnel4: /usr/bin/stunnel'\n")
			os.Chmod(fake, 0o755)
			return []string{"DPKG=" + fake}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			dest := filepath.Join(dir, "dest")
			vars := append(c.setup(t, dir), "DESTDIR="+dest, "BIN="+filepath.Join(dir, "build", "stunnel"), "SYSROOT="+filepath.Join(dir, "sys"))
			out, err := makeIn(t, nil, append([]string{"install"}, vars...)...)
			if err == nil || !strings.Contains(out, "stunnel4") || !strings.Contains(out, "UNIT_NAME=") {
				t.Fatalf("make install with stunnel4 present: err %v, want a refusal naming stunnel4 and UNIT_NAME:\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(dest, "usr/local/bin/stunnel")); !os.IsNotExist(err) {
				t.Fatalf("the refused install installed the binary anyway")
			}
			out, err = makeIn(t, nil, append([]string{"install", "UNIT_NAME=stunnel-tunnel"}, vars...)...)
			if err != nil {
				t.Fatalf("make install UNIT_NAME=stunnel-tunnel: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(dest, "etc/systemd/system/stunnel-tunnel@.service")); err != nil {
				t.Fatalf("unit not installed under its own name: %v", err)
			}
		})
	}
	// Nor a binary that is another program (a self-built TLS stunnel).
	dir := t.TempDir()
	dest := filepath.Join(dir, "dest")
	other := filepath.Join(dest, "usr/local/bin/stunnel")
	writeFile(t, other, "#!/bin/sh\necho 'the TLS wrapper'; exit 1\n")
	os.Chmod(other, 0o755)
	vars := []string{"DESTDIR=" + dest, "BIN=" + filepath.Join(dir, "build", "stunnel"), "SYSROOT=" + filepath.Join(dir, "sys"), "DPKG=false"}
	out, err := makeIn(t, nil, append([]string{"install"}, vars...)...)
	if b, _ := os.ReadFile(other); err == nil || !strings.Contains(string(b), "TLS wrapper") || !strings.Contains(out, "another program") {
		t.Fatalf("another program's /usr/local/bin/stunnel was not refused (err %v):\n%s", err, out)
	}
	if out, _ := makeIn(t, nil, append([]string{"uninstall"}, vars...)...); !strings.Contains(out, "kept") {
		t.Errorf("uninstall did not keep another program's binary:\n%s", out)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("uninstall removed another program's binary: %v", err)
	}

	dir = t.TempDir()
	dest = filepath.Join(dir, "dest")
	foreign := filepath.Join(dest, "etc/systemd/system/stunnel@.service")
	writeFile(t, foreign, "[Service]\nExecStart=/bin/true\n")
	out, err = makeIn(t, nil, "install", "DESTDIR="+dest, "BIN="+filepath.Join(dir, "build", "stunnel"), "SYSROOT="+filepath.Join(dir, "sys"), "DPKG=false")
	if b, _ := os.ReadFile(foreign); err == nil || string(b) != "[Service]\nExecStart=/bin/true\n" {
		t.Fatalf("a foreign unit file was overwritten (err %v):\n%s", err, out)
	}
}

// The unit must not loop on a bad config: no ExecStartPre (its failure
// restarts the unit, and RestartPreventExitStatus= looks only at the main
// process), and `up`'s exit 2 stops restarts.
func TestUnitDoesNotLoopOnBadConfig(t *testing.T) {
	b, err := os.ReadFile("stunnel@.service")
	if err != nil {
		t.Fatal(err)
	}
	var directives []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			directives = append(directives, l)
		}
	}
	u := strings.Join(directives, "\n")
	if strings.Contains(u, "ExecStartPre=") {
		t.Error("the unit has an ExecStartPre=: a failing one restarts the unit every RestartSec")
	}
	for _, want := range []string{"ExecStart=/usr/local/bin/stunnel up -c /etc/stunnel/%i.toml", "RestartPreventExitStatus=2", "Restart=on-failure"} {
		if !strings.Contains(u, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// `sudo make demo` (and build) gives bin/ back to the user who ran sudo, so
// a later `make clean` works without root.
func TestSudoBuildLeavesNoRootOwnedBin(t *testing.T) {
	roottest.Require(t, "chown to SUDO_UID (standing in for sudo)")
	dir := filepath.Join(t.TempDir(), "bin")
	out, err := makeIn(t, []string{"SUDO_UID=65534", "SUDO_GID=65534"}, "build", "BIN="+filepath.Join(dir, "stunnel"))
	if err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, p := range []string{dir, filepath.Join(dir, "stunnel")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("%s owned by %d:%d after a sudo build, want the sudo user 65534:65534", p, st.Uid, st.Gid)
		}
	}
}

// PREFIX moves the binary, and the installed unit runs it from there.
func TestMakeInstallPrefix(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "dest")
	out, err := makeIn(t, nil, "install", "PREFIX=/opt/stx", "DESTDIR="+dest, "BIN="+filepath.Join(dir, "build", "stunnel"),
		"SYSROOT="+filepath.Join(dir, "sys"), "DPKG=false")
	if err != nil {
		t.Fatalf("make install PREFIX=/opt/stx: %v\n%s", err, out)
	}
	if m := mode(t, filepath.Join(dest, "opt/stx/bin/stunnel")); m.Perm() != 0o755 {
		t.Errorf("binary mode %v", m)
	}
	u, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/stunnel@.service"))
	if err != nil || !strings.Contains(string(u), "ExecStart=/opt/stx/bin/stunnel up -c /etc/stunnel/%i.toml") {
		t.Fatalf("unit does not run /opt/stx/bin/stunnel (%v):\n%s", err, u)
	}
}

// Uninstall refuses while an instance is enabled: removing the unit file
// under it would leave the tunnel enabled through a dangling symlink in
// multi-user.target.wants (and, if it runs, running from a deleted
// binary). The refusal names the instance and the command, and removes
// nothing.
func TestMakeUninstallRefusesWhileEnabled(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "dest")
	vars := []string{"DESTDIR=" + dest, "BIN=" + filepath.Join(dir, "build", "stunnel"), "SYSROOT=" + filepath.Join(dir, "sys"), "DPKG=false"}
	if out, err := makeIn(t, nil, append([]string{"install"}, vars...)...); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, "usr/local/bin/stunnel")
	unit := filepath.Join(dest, "etc/systemd/system/stunnel@.service")
	wants := filepath.Join(dest, "etc/systemd/system/multi-user.target.wants")
	enabled := filepath.Join(wants, "stunnel@st0.service")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	// What `systemctl enable stunnel@st0` makes; another unit's instance
	// does not count.
	for _, l := range []string{enabled, filepath.Join(wants, "stunnel-tunnel@st1.service")} {
		if err := os.Symlink("/etc/systemd/system/"+strings.SplitN(filepath.Base(l), "@", 2)[0]+"@.service", l); err != nil {
			t.Fatal(err)
		}
	}
	out, err := makeIn(t, nil, append([]string{"uninstall"}, vars...)...)
	if err == nil || !strings.Contains(out, "systemctl disable --now stunnel@st0") || strings.Contains(out, "stunnel-tunnel@st1") || strings.Count(strings.TrimSpace(out), "\n") > 1 {
		t.Errorf("uninstall with stunnel@st0 enabled: err %v, want one line naming only it and `systemctl disable --now stunnel@st0`:\n%s", err, out)
	}
	for _, p := range []string{bin, unit} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the refused uninstall removed %s: %v", p, err)
		}
	}
	if err := os.Remove(enabled); err != nil {
		t.Fatal(err)
	}
	if out, err := makeIn(t, nil, append([]string{"uninstall"}, vars...)...); err != nil {
		t.Fatalf("uninstall once disabled: %v\n%s", err, out)
	}
	if _, err := os.Stat(unit); !os.IsNotExist(err) {
		t.Errorf("unit still there after uninstall (%v)", err)
	}
}

// A go older than go.mod's is named, with where to get a new one, in one
// line, before it says something about go.mod that does not help (Debian's
// golang package is 1.19 in bookworm).
func TestMakeNamesTooOldGo(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "go")
	writeFile(t, old, "#!/bin/sh\n[ \"$1 $2\" = \"env GOVERSION\" ] && echo go1.19.8 && exit 0\necho \"$0 $*: must not run\"; exit 3\n")
	if err := os.Chmod(old, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := makeIn(t, nil, "build", "GO="+old, "BIN="+filepath.Join(dir, "stunnel"))
	if err == nil || !strings.Contains(out, "is 1.19.8") || !strings.Contains(out, "go.dev/dl") || strings.Contains(out, "must not run") {
		t.Fatalf("make build with go1.19.8: err %v, want a refusal naming the version and go.dev/dl before go runs:\n%s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.HasPrefix(lines[0], "make: stunnel needs Go ") {
		t.Errorf("first line %q, want the one-line explanation", lines[0])
	}
}
