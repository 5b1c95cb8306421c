package policy

import (
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	w := newWorld(t)
	src := `known_hosts = ["/kh"]
unknown_destination = "deny"
[defaults]
deny = ["*.prod.internal"]
[[key]]
match = "work-*"
allow = ["jump.example", "jump.example>db.internal"]
max_forward_depth = 0
confirm = "always"
remember = "5m"
namespaces = []
`
	got := mustParse(t, src, files{"/kh": w.knownHosts}).Summary()
	want := `policy: /etc/policy.toml
known_hosts: /kh (host keys: 8; hashed entries: 1; @cert-authority lines: 1; @revoked lines: 1)
unknown_destination = "deny": a forwarded login to a host known_hosts cannot name is refused
prompt: (default); confirm_timeout = 30s; notify = "denied"

[defaults], for every key no [[key]] matches:
  log in to:   any host
  forwarding:  through at most 1 forwarded agent
  never:       *.prod.internal
  confirm:     ask before every use through a forwarded agent; a yes is not remembered
  SSHSIG:      any namespace, on this machine

[[key]] match "work-*", keys whose comment matches it:
  log in to:   jump.example; db.internal only right after jump.example
  forwarding:  directly only, never through a forwarded agent
  never:       *.prod.internal (from [defaults])
  confirm:     ask before every use; a yes is remembered for 5m0s
  SSHSIG:      never (namespaces is empty)

Everywhere: SSHSIG (ssh-keygen -Y sign) and other non-login signatures only on this machine, never through an ssh connection.
`
	if got != want {
		t.Errorf("Summary:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(Default().Summary(), "known_hosts: none, so no host has a name") {
		t.Errorf("Default summary: %s", Default().Summary())
	}
}

func TestSummaryClients(t *testing.T) {
	src := `[[key]]
match = "deploy"
clients = ["git", "/usr/bin/ssh-keygen", "unit:cron.service"]

[[client]]
name = "coding assistants"
match = ["claude", "codex*"]
allow = ["github.com"]
confirm = "always"
remember = "2m"
namespaces = ["git"]

[[client]]
match = "container:*"
keys = ["work-*"]
max_forward_depth = 0
deny = ["*.prod.internal"]
`
	got := mustParse(t, src, files{}).Summary()
	for _, want := range []string{
		`  programs:    only when git or the program /usr/bin/ssh-keygen is the requesting process or one of its parents, or the request comes from systemd unit cron.service` + "\n",
		"\n[[client]] \"coding assistants\", for every key, when claude or codex* is the requesting process or one of its parents (adds to the key's own rules, never loosens them):\n" +
			"  log in to:   only github.com\n" +
			"  confirm:     ask before every use; a yes is remembered for at most 2m0s\n" +
			"  SSHSIG:      only namespaces \"git\"\n",
		"\n[[client]] \"container:*\", for keys matching \"work-*\", when the request comes from inside a container (adds to the key's own rules, never loosens them):\n" +
			"  never:       *.prod.internal\n" +
			"  forwarding:  directly only, never through a forwarded agent\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks\n%s\ngot:\n%s", want, got)
		}
	}
}
