package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshHost is a real sshd on 127.0.0.1 with its own host key.
type sshHost struct {
	Name    string
	Port    int
	HostPub string // host public key line
	log     string
}

// sshNet is a set of sshd hosts and the client config that names them.
type sshNet struct {
	t          testing.TB
	dir        string
	Config     string // ssh -F file
	KnownHosts string
	AuthKeys   string
	Hosts      map[string]*sshHost
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sshNetOpts configures every host of an sshNet.
type sshNetOpts struct {
	// UserCA is a CA public key file the hosts trust for user
	// certificates (TrustedUserCAKeys), as servers do that issue
	// short-lived certificates instead of editing authorized_keys.
	UserCA string
}

// newSSHNet starts one sshd per name. Every host accepts the keys later
// given to authorize(), and agent forwarding is on.
func newSSHNet(t testing.TB, names ...string) *sshNet {
	t.Helper()
	return newSSHNetWith(t, sshNetOpts{}, names...)
}

// newSSHNetWith is newSSHNet with options for every host.
func newSSHNetWith(t testing.TB, o sshNetOpts, names ...string) *sshNet {
	t.Helper()
	sshd := need(t, "/usr/sbin/sshd", "openssh-server")
	need(t, "ssh", "openssh-client")
	if os.Geteuid() == 0 {
		_ = os.MkdirAll("/run/sshd", 0o755)
	}
	dir := shortTempDir(t)
	n := &sshNet{t: t, dir: dir, Config: filepath.Join(dir, "ssh_config"), KnownHosts: filepath.Join(dir, "known_hosts"), AuthKeys: filepath.Join(dir, "authorized_keys"), Hosts: map[string]*sshHost{}}
	if err := os.WriteFile(n.AuthKeys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg, kh strings.Builder
	for _, name := range names {
		hk := filepath.Join(dir, "hostkey_"+name)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
			t.Fatalf("host key: %v %s", err, out)
		}
		pub, _ := os.ReadFile(hk + ".pub")
		fields := strings.Fields(string(pub))
		h := &sshHost{Name: name, Port: freePort(t), HostPub: fields[0] + " " + fields[1], log: filepath.Join(dir, "sshd_"+name+".log")}
		conf := filepath.Join(dir, "sshd_"+name+".conf")
		sc := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile none
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowAgentForwarding yes
AcceptEnv LANG
LogLevel DEBUG1
`, h.Port, hk, n.AuthKeys)
		if o.UserCA != "" {
			sc += "TrustedUserCAKeys " + o.UserCA + "\n"
		}
		if err := os.WriteFile(conf, []byte(sc), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sshd, "-D", "-e", "-f", conf)
		logf, err := os.Create(h.log)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start sshd: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(h.log)
				t.Logf("sshd %s log:\n%s", name, tail(string(b), 3000))
			}
		})
		waitPort(t, h.Port)
		n.Hosts[name] = h
		fmt.Fprintf(&cfg, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  HostKeyAlias %s\n\n", name, h.Port, name)
		fmt.Fprintf(&kh, "%s %s\n", name, h.HostPub)
	}
	// No identity files: keys come only from the agent (forwarded or not).
	fmt.Fprintf(&cfg, `Host *
  User %s
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  IdentityFile %s/no-such-key
  BatchMode yes
  PreferredAuthentications publickey
  ConnectTimeout 10
  LogLevel ERROR
`, currentUser(t), n.KnownHosts, dir)
	if err := os.WriteFile(n.Config, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.KnownHosts, []byte(kh.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func currentUser(t testing.TB) string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func waitPort(t testing.TB, port int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sshd on port %d did not start", port)
}

// hostLog is what the host's sshd logged so far (LogLevel DEBUG1).
func (n *sshNet) hostLog(name string) string {
	n.t.Helper()
	h, ok := n.Hosts[name]
	if !ok {
		n.t.Fatalf("no host %q", name)
	}
	b, err := os.ReadFile(h.log)
	if err != nil {
		n.t.Fatalf("read sshd log of %s: %v", name, err)
	}
	return string(b)
}

// authorize lets a public key log in to every host.
func (n *sshNet) authorize(pubFile string) {
	b, err := os.ReadFile(pubFile)
	if err != nil {
		n.t.Fatal(err)
	}
	f, err := os.OpenFile(n.AuthKeys, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	f.Write(b)
}

// ssh runs `ssh -F config ARGS` against the agent; chained hops are
// written as nested commands by the caller, e.g.
// n.ssh(a, "-A", "jump", n.sshCmd("target", "true")).
func (n *sshNet) ssh(a *agentProc, args ...string) (string, int) {
	n.t.Helper()
	full := append([]string{"-F", n.Config}, args...)
	return a.run("ssh", full...)
}

// sshCmd is the remote command line that runs ssh from a hop.
func (n *sshNet) sshCmd(args ...string) string {
	return "ssh -F " + n.Config + " " + strings.Join(args, " ")
}

// policy is a policy file whose host names come from this net's
// known_hosts; body holds the rest (tables after the top-level keys).
func (n *sshNet) policy(body string) string {
	return fmt.Sprintf("known_hosts = [%q]\n", n.KnownHosts) + body
}
