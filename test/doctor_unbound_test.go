package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// TestDoctorWarnsAboutClientsWithoutSessionBind: a program that signs
// logins without session-bind (here Go's x/crypto ssh client, logging in
// to a real sshd through the agent) could forward the agent without the
// agent knowing; doctor says so while a key relies on an allow list.
func TestDoctorWarnsAboutClientsWithoutSessionBind(t *testing.T) {
	need(t, "dbus-send", "dbus")
	bus := startSecretBus(t, unlockedKeyring)
	s := newDoctorSetup(t, bus, goodPolicy)
	n := newSSHNet(t, "target")
	dir := t.TempDir()
	key := newKey(t, dir, "work-1", "ed25519", 0)
	n.authorize(key + ".pub")
	s.a.mustRun("ssh-add", key)

	out, _ := runDoctor(t, s.env, nil)
	if st := checkLines(out)["clients"]; st != "ok" {
		t.Fatalf("before any unbound login: clients %q, want ok:\n%s", st, out)
	}

	conn, err := net.Dial("unix", s.a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kh, err := os.ReadFile(n.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	_, _, hostKey, _, _, err := ssh.ParseKnownHosts(kh)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{
		User:            currentUser(t),
		Auth:            []ssh.AuthMethod{ssh.PublicKeysCallback(sshagent.NewClient(conn).Signers)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
	}
	c, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.Hosts["target"].Port), cfg)
	if err == nil {
		c.Close()
		t.Fatal("a login without session-bind succeeded for a key with an allow list")
	}

	out, code := runDoctor(t, s.env, nil)
	if st := checkLines(out)["clients"]; st != "warn" {
		t.Errorf("clients %q, want warn:\n%s", st, out)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	for _, want := range []string{"1 loaded key(s) have allow lists", exe, "OpenSSH 8.9 or newer"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("a warning made doctor exit %d, want 0", code)
	}
}
