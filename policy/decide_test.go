package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func decidePolicy(w *world, unknownDest string) string {
	return fmt.Sprintf(`
known_hosts = ["/kh"]
unknown_destination = %q

[defaults]
confirm = "never"
max_forward_depth = 1
remember = "5m"
namespaces = ["git", "file"]
deny = ["*.prod.internal"]

[[key]]
match = "jumponly"
allow = ["jump.example"]
max_forward_depth = 0

[[key]]
match = "chain"
allow = ["jump.example", "jump.example>db.internal"]

[[key]]
match = "deep"
max_forward_depth = 2

[[key]]
match = "hashed"
allow = ["hashed.example"]

[[key]]
match = "port"
allow = ["[git.example]:2222"]

[[key]]
match = "fp"
allow = ["jump.example", "jump.example>%s"]

[[key]]
match = "cert"
allow = ["*.certified", "jump.example"]

[[key]]
match = "lab"
allow = ["*.lab", "x*.lab"]

[[key]]
match = "labdeny"
deny = ["secret.lab", "db.lab"]

[[key]]
match = "denywins"
allow = ["*.internal", "jump.example"]
deny = ["db.internal"]

[[key]]
match = "always"
confirm = "always"
remember = "1m"

[[key]]
match = "fwdconfirm"
confirm = "forwarded"

[[key]]
match = %q
allow = ["other.example"]

[[key]]
match = "work-*"
allow = ["jump.example"]

[[key]]
match = "nons"
namespaces = []

[[key]]
match = "gitonly"
clients = ["git", "/usr/bin/ssh-keygen"]

[[key]]
match = "sandboxed"
clients = ["unit:cron.service", "cgroup:/safe-agent-test-*", "container:*"]

[[client]]
name = "assistants"
match = ["claude*", "codex"]
allow = ["jump.example", "jump.example>db.internal"]
confirm = "always"
remember = "1m"
namespaces = ["git"]

[[client]]
match = "wrapper.sh"
keys = ["work-*"]
confirm = "always"

[[client]]
match = "container:docker"
max_forward_depth = 0
deny = ["other.example"]
`, unknownDest, w.stranger.fp(), w.userKey.fp())
}

// decideRow is one row of the Decide table.
type decideRow struct {
	name     string
	ud       string // unknown_destination; "" = confirm
	req      Request
	kind     FindingKind
	verdict  Verdict
	rule     string
	reason   string // exact, "" = not checked
	remember time.Duration
}

func decidePolicies(t *testing.T, w *world) map[string]*Policy {
	fsys := files{"/kh": w.knownHosts}
	pol := map[string]*Policy{}
	for _, ud := range []string{"allow", "confirm", "deny"} {
		pol[ud] = mustParse(t, decidePolicy(w, ud), fsys)
	}
	return pol
}

func decideRows(w *world) []decideRow {
	now := time.Unix(1_700_000_000, 0)
	fwd := func(k ssh.PublicKey) Hop { return Hop{HostKey: k, Forwarded: true} }
	dst := func(k ssh.PublicKey) Hop { return Hop{HostKey: k} }
	key := func(c string) Key { return Key{Comment: c, Fingerprint: "SHA256:" + strings.Repeat("A", 43)} }
	depth0 := 0
	depth2 := 2

	type row = decideRow
	rows := []row{
		// Depth limits.
		{name: "depth 0: direct login allowed", req: Request{Key: key("jumponly"), Hops: []Hop{dst(w.jump.pub)}, User: "me"},
			kind: FindAllowed, verdict: Allow, rule: `key "jumponly" allow[0]`,
			reason: `Allowed: key "jumponly" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may log in as me to jump.example (here → jump.example): allow entry "jump.example" in [[key]] match "jumponly".`},
		{name: "depth 0: through a forwarded agent refused", req: Request{Key: key("jumponly"), Hops: []Hop{fwd(w.jump.pub), dst(w.jump.pub)}, User: "me"},
			kind: FindTooDeep, verdict: Deny, rule: `key "jumponly" max_forward_depth`,
			reason: `Refused: key "jumponly" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in as me to jump.example (here → jump.example (forwarded) → jump.example) through a forwarded agent at all: max_forward_depth = 0 in [[key]] match "jumponly". If you trust every host on this path, raise max_forward_depth there in /etc/policy.toml.`},
		{name: "depth 1 default: one forwarded hop allowed", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `defaults`,
			reason: `Allowed: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may log in to db.internal (here → jump.example (forwarded) → db.internal): [defaults] has no allow list and the path is within max_forward_depth = 1.`},
		{name: "depth 1 default: two forwarded hops refused", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), fwd(w.db.pub), dst(w.other.pub)}},
			kind: FindTooDeep, verdict: Deny, rule: `defaults max_forward_depth`,
			reason: `Refused: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to other.example (here → jump.example (forwarded) → db.internal (forwarded) → other.example) through 2 forwarded agents (at most 1 allowed): max_forward_depth = 1 in [defaults]. If you trust every host on this path, raise max_forward_depth there in /etc/policy.toml.`},
		{name: "depth 2: two forwarded hops allowed", req: Request{Key: key("deep"), Hops: []Hop{fwd(w.jump.pub), fwd(w.db.pub), dst(w.other.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `key "deep"`},
		{name: "depth 2: three forwarded hops refused", req: Request{Key: key("deep"), Hops: []Hop{fwd(w.jump.pub), fwd(w.db.pub), fwd(w.other.pub), dst(w.git.pub)}},
			kind: FindTooDeep, verdict: Deny, rule: `key "deep" max_forward_depth`},
		{name: "stored max depth stricter than policy", req: Request{Key: key("deep"), Settings: Settings{MaxForwardDepth: &depth0}, Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			kind: FindTooDeep, verdict: Deny, rule: `stored settings max_forward_depth`,
			reason: `Refused: key "deep" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to db.internal (here → jump.example (forwarded) → db.internal) through a forwarded agent at all: max_forward_depth = 0 in the settings stored with the key (safe-agent add). If you trust every host on this path, raise max_forward_depth there (remove the key and add it again with new settings).`},
		{name: "stored max depth looser than policy: policy wins", req: Request{Key: key("jumponly"), Settings: Settings{MaxForwardDepth: &depth2}, Hops: []Hop{fwd(w.jump.pub), dst(w.jump.pub)}},
			kind: FindTooDeep, verdict: Deny, rule: `key "jumponly" max_forward_depth`},

		// a>b chains.
		{name: "chain: jump then db allowed", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, User: "deploy"},
			kind: FindAllowed, verdict: Allow, rule: `key "chain" allow[1]`,
			reason: `Allowed: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may log in as deploy to db.internal (here → jump.example (forwarded) → db.internal): allow entry "jump.example>db.internal" in [[key]] match "chain".`},
		{name: "chain: db directly refused", req: Request{Key: key("chain"), Hops: []Hop{dst(w.db.pub)}, User: "deploy"},
			kind: FindNotAllowed, verdict: Deny, rule: `key "chain" allow`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in as deploy to db.internal (here → db.internal): the destination, db.internal, is not allowed by [[key]] match "chain" (allow = ["jump.example", "jump.example>db.internal"]). To permit it, add "db.internal" to that allow list in /etc/policy.toml.`},
		{name: "chain: jump then other refused", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub), dst(w.other.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: `key "chain" allow`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to other.example (here → jump.example (forwarded) → other.example): the destination, other.example, is not allowed by [[key]] match "chain" (allow = ["jump.example", "jump.example>db.internal"]). To permit it, add "jump.example>other.example" to that allow list in /etc/policy.toml.`},
		{name: "chain: through db (not allowed as a hop on the way) refused", req: Request{Key: key("deep"), Settings: Settings{Allow: []string{"jump.example", "jump.example>db.internal"}}, Hops: []Hop{fwd(w.jump.pub), fwd(w.db.pub), dst(w.other.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: `stored settings allow`,
			reason: `Refused: key "deep" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to other.example (here → jump.example (forwarded) → db.internal (forwarded) → other.example): the destination, other.example, is not allowed by the settings stored with the key (safe-agent add) (allow = ["jump.example", "jump.example>db.internal"]). To permit it, add "db.internal>other.example" to that allow list (remove the key and add it again with --allow).`},
		{name: "chain: the first hop must be allowed too", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.other.pub), dst(w.jump.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: `key "chain" allow`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to jump.example (here → other.example (forwarded) → jump.example): a host on the way, other.example, is not allowed by [[key]] match "chain" (allow = ["jump.example", "jump.example>db.internal"]). To permit it, add "other.example" to that allow list in /etc/policy.toml.`},

		// Deny over allow, globs, wildcard names.
		{name: "deny wins over allow", req: Request{Key: key("denywins"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			kind: FindDenied, verdict: Deny, rule: `key "denywins" deny[0]`,
			reason: `Refused: key "denywins" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to db.internal (here → jump.example (forwarded) → db.internal): db.internal matches deny entry "db.internal" in [[key]] match "denywins". To reach this host, remove that entry in /etc/policy.toml.`},
		{name: "deny from defaults applies to keys without their own deny", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.prod.pub)}},
			kind: FindDenied, verdict: Deny, rule: `defaults deny[0]`},
		{name: "stored deny applies with policy allow", req: Request{Key: key("chain"), Settings: Settings{Deny: []string{"jump.example"}}, Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			kind: FindDenied, verdict: Deny, rule: `stored settings deny[0]`},
		{name: "stored allow must also allow", req: Request{Key: key("chain"), Settings: Settings{Allow: []string{"jump.example"}}, Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: `stored settings allow`},
		{name: "bad stored pattern refuses", req: Request{Key: key("nobody"), Settings: Settings{Allow: []string{"a>>b"}}, Hops: []Hop{dst(w.db.pub)}},
			kind: FindBadSettings, verdict: Deny, rule: `stored settings`},
		{name: "wildcard known_hosts line: covering glob allows", req: Request{Key: key("lab"), Hops: []Hop{dst(w.lab.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `key "lab" allow[0]`},
		{name: "wildcard known_hosts line: narrower glob does not allow", req: Request{Key: key("nobody"), Settings: Settings{Allow: []string{"x*.lab"}}, Hops: []Hop{dst(w.lab.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: `stored settings allow`},
		{name: "wildcard known_hosts line: a deny it could match refuses", req: Request{Key: key("labdeny"), Hops: []Hop{dst(w.lab.pub)}},
			kind: FindDenied, verdict: Deny, rule: `key "labdeny" deny[1]`},

		// known_hosts forms.
		{name: "hashed known_hosts entry matched by the policy's name", req: Request{Key: key("hashed"), Hops: []Hop{dst(w.hashed.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `key "hashed" allow[0]`},
		{name: "[host]:port entry", req: Request{Key: key("port"), Hops: []Hop{dst(w.git.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `key "port" allow[0]`},
		{name: "[host]:port entry: plain name refused", req: Request{Key: key("port"), Hops: []Hop{dst(w.jump.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: `key "port" allow`},
		{name: "comma list: second name", req: Request{Key: key("nobody"), Settings: Settings{Allow: []string{"10.0.0.5"}}, Hops: []Hop{dst(w.db.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `stored settings allow[0]`},
		{name: "fingerprint entry matches an unnamed host", req: Request{Key: key("fp"), Hops: []Hop{fwd(w.jump.pub), dst(w.stranger.pub)}, User: "u"},
			kind: FindAllowed, verdict: Allow, rule: `key "fp" allow[1]`},
		{name: "revoked host refused", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.revoked.pub)}},
			kind: FindRevoked, verdict: Deny, rule: `known_hosts @revoked`,
			reason: fmt.Sprintf(`Refused: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to an unnamed host (%s) (here → an unnamed host (%s)): the host key %s is marked @revoked in /kh:9. If the host has a new key, replace its line in known_hosts.`, w.revoked.fp(), w.revoked.fp(), w.revoked.fp())},

		// Host certificates.
		{name: "CA-certified host: principal named by the CA line", req: Request{Key: key("cert"), Hops: []Hop{dst(w.dbCert)}, Now: now},
			kind: FindAllowed, verdict: Allow, rule: `key "cert" allow[0]`},
		{name: "CA-certified host through jump", req: Request{Key: key("cert"), Hops: []Hop{fwd(w.jump.pub), dst(w.dbCert)}, Now: now},
			kind: FindAllowed, verdict: Allow, rule: `key "cert" allow[0]`},
		{name: "CA line negation excludes a principal", req: Request{Key: key("cert"), Hops: []Hop{dst(w.evilCert)}, Now: now},
			kind: FindNotAllowed, verdict: Deny, rule: `key "cert" allow`},
		{name: "expired host certificate gets no names", req: Request{Key: key("cert"), Hops: []Hop{dst(w.expiredCert)}, Now: now},
			kind: FindNotAllowed, verdict: Deny, rule: `key "cert" allow`},
		{name: "user certificate is not a host certificate", req: Request{Key: key("cert"), Hops: []Hop{dst(w.userCert)}, Now: now},
			kind: FindNotAllowed, verdict: Deny, rule: `key "cert" allow`},
		{name: "forged CA signature gets no names", req: Request{Key: key("cert"), Hops: []Hop{dst(w.badCASig)}, Now: now},
			kind: FindNotAllowed, verdict: Deny, rule: `key "cert" allow`},
		{name: "certificate without a time is not trusted", req: Request{Key: key("cert"), Hops: []Hop{dst(w.dbCert)}},
			kind: FindNotAllowed, verdict: Deny, rule: `key "cert" allow`},

		// Unknown destinations.
		{name: "unknown destination forwarded: confirm", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.stranger.pub)}, User: "root"},
			kind: FindUnknownDest, verdict: Confirm, rule: `unknown_destination`, remember: 5 * time.Minute,
			reason: fmt.Sprintf(`Ask first: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) would log in as root to an unnamed host (%s) (here → jump.example (forwarded) → an unnamed host (%s)): known_hosts has no name for it, and unknown_destination = "confirm".`, w.stranger.fp(), w.stranger.fp())},
		{name: "unknown destination forwarded: deny", ud: "deny", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.stranger.pub)}},
			kind: FindUnknownDest, verdict: Deny, rule: `unknown_destination`,
			reason: fmt.Sprintf(`Refused: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to an unnamed host (%s) through a forwarded agent (here → jump.example (forwarded) → an unnamed host (%s)): known_hosts has no name for it, and unknown_destination = "deny". Add the host to known_hosts, add its fingerprint to allow, or set unknown_destination = "confirm" in /etc/policy.toml.`, w.stranger.fp(), w.stranger.fp())},
		{name: "unknown destination forwarded: allow", ud: "allow", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.stranger.pub)}},
			kind: FindUnknownDest, verdict: Allow, rule: `unknown_destination`},
		{name: "unknown destination not forwarded: not asked", ud: "deny", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.stranger.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `defaults`},
		{name: "unnamed destination with an allow list refused", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub), dst(w.stranger.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: `key "chain" allow`,
			reason: fmt.Sprintf(`Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to an unnamed host (%s) (here → jump.example (forwarded) → an unnamed host (%s)): the destination, an unnamed host (%s), is not allowed by [[key]] match "chain" (allow = ["jump.example", "jump.example>db.internal"]). known_hosts has no name for it, so only a fingerprint entry can match it. To permit it, add "jump.example>%s" to that allow list in /etc/policy.toml.`, w.stranger.fp(), w.stranger.fp(), w.stranger.fp(), w.stranger.fp())},
		{name: "login from a forwarded hop without a bind for its destination", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub)}},
			kind: FindUnknownDest, verdict: Confirm, rule: `unknown_destination`, remember: 5 * time.Minute},
		{name: "restricted key, destination not bound on the far side", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub)}},
			kind: FindUnbound, verdict: Deny, rule: `key "chain" allow`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to an unknown host (here → jump.example (forwarded) → ?): the client on jump.example did not say which host it logs in to (no session-bind for the destination), and [[key]] match "chain" restricts the key with allow. The client there needs OpenSSH 8.9+.`},

		// Plain "publickey" logins (not host-bound) through a forwarded agent:
		// the last bind is only a claim, the destination is unknown.
		{name: "not host-bound through jump, restricted key refused", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub), dst(w.jump.pub)}, NotHostbound: true, User: "root"},
			kind: FindUnbound, verdict: Deny, rule: `key "chain" allow`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in as root to an unknown host (here → jump.example (forwarded) → ? (not host-bound; bound to jump.example)): the login is a plain "publickey" signature, which does not name the server it is for, so whoever holds the forwarded agent on jump.example could use it to log in to any server that accepts the key; [[key]] match "chain" restricts the key with allow, so through a forwarded agent only host-bound logins (OpenSSH 8.9+ on both ends) are accepted. Log in to an older server directly, not through a forwarded agent.`},
		{name: "not host-bound through jump to an allowed destination still refused", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, NotHostbound: true},
			kind: FindUnbound, verdict: Deny, rule: `key "chain" allow`},
		{name: "not host-bound through jump, unrestricted key: unknown destination asks", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.jump.pub)}, NotHostbound: true, User: "root"},
			kind: FindUnknownDest, verdict: Confirm, rule: `unknown_destination`, remember: 5 * time.Minute,
			reason: `Ask first: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) would log in as root to an unknown host (here → jump.example (forwarded) → ? (not host-bound; bound to jump.example)): the login is not host-bound (a plain "publickey" signature does not name the server, so it would work on any server that accepts the key), and unknown_destination = "confirm".`},
		{name: "not host-bound through jump, unknown_destination deny", ud: "deny", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, NotHostbound: true},
			kind: FindUnknownDest, verdict: Deny, rule: `unknown_destination`},
		{name: "not host-bound through jump, denied claim still refused", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.prod.pub)}, NotHostbound: true},
			kind: FindDenied, verdict: Deny, rule: `defaults deny[0]`},
		{name: "not host-bound, direct (no forwarding hop): the bind names the host", req: Request{Key: key("jumponly"), Hops: []Hop{dst(w.jump.pub)}, NotHostbound: true},
			kind: FindAllowed, verdict: Allow, rule: `key "jumponly" allow[0]`},
		{name: "not host-bound, direct to an unnamed host: not asked", ud: "deny", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.stranger.pub)}, NotHostbound: true},
			kind: FindAllowed, verdict: Allow, rule: `defaults`},
		{name: "inconsistent binds (login bind followed by more) refused", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.jump.pub), dst(w.db.pub)}},
			kind: FindBindOrder, verdict: Deny, rule: `session-bind`},

		// No bind, failed binds.
		{name: "no bind, unrestricted key: local login allowed", req: Request{Key: key("nobody"), User: "me"},
			kind: FindNoBindLocal, verdict: Allow, rule: `defaults`},
		{name: "no bind, key with an allow list refused", req: Request{Key: key("chain"), User: "me"},
			kind: FindNoBindRestricted, verdict: Deny, rule: `key "chain" allow`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in as me to an unknown host: the client did not say which host this login is for (no session-bind), and [[key]] match "chain" limits the key to allow = ["jump.example", "jump.example>db.internal"]. OpenSSH 8.9+ is needed for destination rules: use a newer ssh client, or remove allow from [[key]] match "chain" in /etc/policy.toml.`},
		{name: "no bind, stored allow list refused", req: Request{Key: key("nobody"), Settings: Settings{Allow: []string{"jump.example"}}},
			kind: FindNoBindRestricted, verdict: Deny, rule: `stored settings allow`},
		{name: "failed bind, restricted key refused", req: Request{Key: key("chain"), BindFailed: true, Hops: []Hop{fwd(w.jump.pub)}},
			kind: FindBindFailed, verdict: Deny, rule: `key "chain" allow`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not log in to an unknown host: a session-bind on this connection failed verification, so nothing says where this signature would be used, and [[key]] match "chain" restricts the key with allow. Check the hosts on this path (here → jump.example (forwarded) → ?) for tampering.`},
		{name: "failed bind, unrestricted key: unknown destination, forwarded", req: Request{Key: key("nobody"), BindFailed: true},
			kind: FindUnknownDest, verdict: Confirm, rule: `unknown_destination`, remember: 5 * time.Minute,
			reason: `Ask first: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) would log in to an unknown host (here → ?): a session-bind on this connection failed verification, and unknown_destination = "confirm".`},
		{name: "failed bind, depth 0 key refused", req: Request{Key: key("nobody"), Settings: Settings{MaxForwardDepth: &depth0}, BindFailed: true},
			kind: FindTooDeep, verdict: Deny, rule: `stored settings max_forward_depth`},
		{name: "failed bind, unknown_destination deny", ud: "deny", req: Request{Key: key("nobody"), BindFailed: true},
			kind: FindUnknownDest, verdict: Deny, rule: `unknown_destination`},

		// SSHSIG and opaque.
		{name: "SSHSIG local, listed namespace", req: Request{Key: key("chain"), Purpose: PurposeSSHSIG, Namespace: "git"},
			kind: FindAllowed, verdict: Allow, rule: `defaults namespaces[0]`,
			reason: `Allowed: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may make an SSHSIG signature (ssh-keygen -Y sign, namespace "git") on your own machine: namespace "git" is listed in [defaults].`},
		{name: "SSHSIG local, namespace not listed", req: Request{Key: key("chain"), Purpose: PurposeSSHSIG, Namespace: "email"},
			kind: FindNamespace, verdict: Deny, rule: `defaults namespaces`,
			reason: `Refused: key "chain" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may not make an SSHSIG signature (ssh-keygen -Y sign, namespace "email"): namespaces in [defaults] are "git", "file". Add "email" to namespaces in /etc/policy.toml to allow it.`},
		{name: "SSHSIG local, empty namespaces list", req: Request{Key: key("nons"), Purpose: PurposeSSHSIG, Namespace: "git"},
			kind: FindNamespace, verdict: Deny, rule: `key "nons" namespaces`},
		{name: "SSHSIG through a forwarded agent refused", req: Request{Key: key("nobody"), Purpose: PurposeSSHSIG, Namespace: "git", Hops: []Hop{fwd(w.jump.pub)}},
			kind: FindNotLocal, verdict: Deny, rule: `local only (built-in)`,
			reason: `Refused: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) may make an SSHSIG signature (ssh-keygen -Y sign, namespace "git") only on your own machine: this request came through an ssh connection (here → jump.example (forwarded)). Run the signing command on your own machine instead.`},
		{name: "SSHSIG on a failed-bind connection refused", req: Request{Key: key("nobody"), Purpose: PurposeSSHSIG, Namespace: "git", BindFailed: true},
			kind: FindNotLocal, verdict: Deny, rule: `local only (built-in)`},
		{name: "opaque local allowed", req: Request{Key: key("nobody"), Purpose: PurposeOpaque},
			kind: FindAllowed, verdict: Allow, rule: `defaults`},
		{name: "opaque on a bound connection refused", req: Request{Key: key("nobody"), Purpose: PurposeOpaque, Hops: []Hop{dst(w.jump.pub)}},
			kind: FindNotLocal, verdict: Deny, rule: `local only (built-in)`},

		// Confirm.
		{name: "confirm always: local login asks, remember from the key", req: Request{Key: key("always"), Hops: []Hop{dst(w.jump.pub)}, User: "me"},
			kind: FindConfirmAlways, verdict: Confirm, rule: `key "always" confirm`, remember: time.Minute,
			reason: `Ask first: key "always" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) would log in as me to jump.example (here → jump.example): confirm = "always" in [[key]] match "always".`},
		{name: "confirm always: SSHSIG asks", req: Request{Key: key("always"), Purpose: PurposeSSHSIG, Namespace: "git"},
			kind: FindConfirmAlways, verdict: Confirm, rule: `key "always" confirm`, remember: time.Minute},
		{name: "confirm forwarded: direct login not asked", req: Request{Key: key("fwdconfirm"), Hops: []Hop{dst(w.jump.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `key "fwdconfirm"`},
		{name: "confirm forwarded: forwarded login asks", req: Request{Key: key("fwdconfirm"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			kind: FindConfirmForwarded, verdict: Confirm, rule: `key "fwdconfirm" confirm`, remember: 5 * time.Minute,
			reason: `Ask first: key "fwdconfirm" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) would log in to db.internal (here → jump.example (forwarded) → db.internal): confirm = "forwarded" in [[key]] match "fwdconfirm" asks for every use through a forwarded agent.`},
		{name: "stored confirm (ssh-add -c) asks, never remembered", req: Request{Key: key("nobody"), Settings: Settings{Confirm: true}, Hops: []Hop{dst(w.jump.pub)}},
			kind: FindConfirmKey, verdict: Confirm, rule: `stored settings confirm`, remember: 0,
			reason: `Ask first: key "nobody" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) would log in to jump.example (here → jump.example): the key was added with ssh-add -c or safe-agent add --confirm.`},
		{name: "confirm never upgrades a deny", req: Request{Key: key("always"), Hops: []Hop{fwd(w.jump.pub), fwd(w.db.pub), dst(w.other.pub)}},
			kind: FindTooDeep, verdict: Deny, rule: `defaults max_forward_depth`},
		{name: "unknown destination and confirm forwarded: both reasons", req: Request{Key: key("fwdconfirm"), Hops: []Hop{fwd(w.jump.pub), dst(w.stranger.pub)}},
			kind: FindUnknownDest, verdict: Confirm, rule: `unknown_destination`, remember: 5 * time.Minute,
			reason: fmt.Sprintf(`Ask first: key "fwdconfirm" (SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) would log in to an unnamed host (%s) (here → jump.example (forwarded) → an unnamed host (%s)): known_hosts has no name for it, and unknown_destination = "confirm"; also confirm = "forwarded" in [[key]] match "fwdconfirm" asks for every use through a forwarded agent.`, w.stranger.fp(), w.stranger.fp())},

		// Key selection.
		{name: "key by fingerprint", req: Request{Key: Key{Fingerprint: w.userKey.fp(), Comment: "work-laptop"}, Hops: []Hop{dst(w.jump.pub)}},
			kind: FindNotAllowed, verdict: Deny, rule: fmt.Sprintf(`key %q allow`, w.userKey.fp())},
		{name: "key by comment glob", req: Request{Key: key("work-laptop"), Hops: []Hop{dst(w.jump.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `key "work-*" allow[0]`},
		{name: "unmatched key takes defaults", req: Request{Key: key("home"), Hops: []Hop{dst(w.other.pub)}},
			kind: FindAllowed, verdict: Allow, rule: `defaults`},
	}
	return append(rows, clientRows(w)...)
}

func TestDecide(t *testing.T) {
	w := newWorld(t)
	pol := decidePolicies(t, w)
	rows := decideRows(w)
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			ud := tc.ud
			if ud == "" {
				ud = "confirm"
			}
			got := pol[ud].Decide(tc.req)
			if got.Verdict != tc.verdict || got.Rule != tc.rule {
				t.Errorf("got %v by %q, want %v by %q\nreason: %s", got.Verdict, got.Rule, tc.verdict, tc.rule, got.Reason)
			}
			if got.Finding.Kind != tc.kind {
				t.Errorf("finding = %v, want %v", got.Finding.Kind, tc.kind)
			}
			if got.Text() != got.Reason {
				t.Errorf("Text() = %q, Reason = %q", got.Text(), got.Reason)
			}
			if tc.reason != "" && got.Reason != tc.reason {
				t.Errorf("reason:\n got %s\nwant %s", got.Reason, tc.reason)
			}
			if got.Reason == "" {
				t.Errorf("empty reason")
			}
			if got.Remember != tc.remember {
				t.Errorf("remember = %v, want %v", got.Remember, tc.remember)
			}
		})
	}
}

// The built-in defaults: confirm forwarded, depth 1.
func TestDecideBuiltinDefaults(t *testing.T) {
	w := newWorld(t)
	p := Default()
	k := Key{Comment: "k"}
	tests := []struct {
		name    string
		hops    []Hop
		verdict Verdict
		rule    string
	}{
		{"direct login allowed", []Hop{{HostKey: w.jump.pub}}, Allow, "defaults"},
		{"one forwarded hop asks", []Hop{{HostKey: w.jump.pub, Forwarded: true}, {HostKey: w.db.pub}}, Confirm, "unknown_destination"},
		{"two forwarded hops refused", []Hop{{HostKey: w.jump.pub, Forwarded: true}, {HostKey: w.db.pub, Forwarded: true}, {HostKey: w.other.pub}}, Deny, "defaults max_forward_depth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Decide(Request{Key: k, Hops: tc.hops})
			if got.Verdict != tc.verdict || got.Rule != tc.rule {
				t.Errorf("got %v by %q, want %v by %q (%s)", got.Verdict, got.Rule, tc.verdict, tc.rule, got.Reason)
			}
		})
	}
	if got := p.Decide(Request{Key: k, Hops: []Hop{{HostKey: w.jump.pub, Forwarded: true}, {HostKey: w.db.pub}}}); !strings.Contains(got.Reason, `confirm = "forwarded" in [defaults]`) {
		t.Errorf("built-in forwarded confirm not in reason: %s", got.Reason)
	}
	if got := p.Decide(Request{Key: k, Hops: []Hop{{HostKey: w.jump.pub, Forwarded: true}, {HostKey: w.db.pub}}}); got.Remember != 0 {
		t.Errorf("built-in remember = %v, want 0", got.Remember)
	}
}

func TestVisible(t *testing.T) {
	w := newWorld(t)
	p := mustParse(t, decidePolicy(w, "confirm"), files{"/kh": w.knownHosts})
	fwd := func(k ssh.PublicKey) Hop { return Hop{HostKey: k, Forwarded: true} }
	tests := []struct {
		name string
		key  string
		s    Settings
		hops []Hop
		want bool
	}{
		{"local connection shows everything", "jumponly", Settings{}, nil, true},
		{"a bound, unforwarded connection shows everything", "jumponly", Settings{}, []Hop{{HostKey: w.other.pub}}, true},
		{"depth 0 key hidden on a forwarded connection", "jumponly", Settings{}, []Hop{fwd(w.jump.pub)}, false},
		{"chain key shown on jump: jump>db.internal starts there", "chain", Settings{}, []Hop{fwd(w.jump.pub)}, true},
		{"chain key hidden on other: not allowed there", "chain", Settings{}, []Hop{fwd(w.other.pub)}, false},
		{"one-part entry: any host could be next", "work-1", Settings{}, []Hop{fwd(w.jump.pub)}, true},
		{"unrestricted key shown at depth 1", "nobody", Settings{}, []Hop{fwd(w.jump.pub)}, true},
		{"unrestricted key hidden at depth 2", "nobody", Settings{}, []Hop{fwd(w.jump.pub), fwd(w.db.pub)}, false},
		{"denied hop hides", "denywins", Settings{}, []Hop{fwd(w.db.pub)}, false},
		{"revoked hop hides", "nobody", Settings{}, []Hop{fwd(w.revoked.pub)}, false},
		{"stored allow without a continuation hides", "nobody", Settings{Allow: []string{"other.example>db.internal"}}, []Hop{fwd(w.jump.pub)}, false},
		{"stored allow with a continuation shows", "nobody", Settings{Allow: []string{"jump.example", "jump.example>db.internal"}}, []Hop{fwd(w.jump.pub)}, true},
		{"bound destination allowed after jump shows", "chain", Settings{}, []Hop{fwd(w.jump.pub), {HostKey: w.db.pub}}, true},
		{"bound destination not allowed after jump hides", "chain", Settings{}, []Hop{fwd(w.jump.pub), {HostKey: w.other.pub}}, false},
		{"bound destination too deep hides", "jumponly", Settings{}, []Hop{fwd(w.jump.pub), {HostKey: w.jump.pub}}, false},
		{"unnamed bound destination shows when unknown_destination asks", "nobody", Settings{}, []Hop{fwd(w.jump.pub), {HostKey: w.stranger.pub}}, true},
		{"inconsistent binds hide", "nobody", Settings{}, []Hop{{HostKey: w.other.pub}, fwd(w.jump.pub)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := p.Visible(Request{Key: Key{Comment: tc.key}, Settings: tc.s, Hops: tc.hops})
			if got != tc.want {
				t.Errorf("Visible = %v, want %v (%s)", got, tc.want, why.Reason)
			}
			if !got && (why.Verdict != Deny || why.Rule == "" || !strings.HasPrefix(why.Reason, "Refused: ")) {
				t.Errorf("hidden without a refusal: %+v", why)
			}
		})
	}
	strict := mustParse(t, decidePolicy(w, "deny"), files{"/kh": w.knownHosts})
	if ok, _ := strict.Visible(Request{Key: Key{Comment: "nobody"}, Hops: []Hop{fwd(w.jump.pub), {HostKey: w.stranger.pub}}}); ok {
		t.Errorf("unnamed bound destination shown although unknown_destination = \"deny\"")
	}
}

// TestVisibleAgreesWithDecide runs every Decide row whose path is judged
// the same way for a list and for a login (a forwarding hop followed by a
// bound destination, or a failed bind) through Visible: a key is listed
// exactly when a host-bound login on that path is not refused.
func TestVisibleAgreesWithDecide(t *testing.T) {
	w := newWorld(t)
	pol := decidePolicies(t, w)
	n := 0
	for _, tc := range decideRows(w) {
		r := tc.req
		hops := r.Hops
		fwd := slices.ContainsFunc(hops, func(h Hop) bool { return h.Forwarded })
		destBound := len(hops) > 0 && !hops[len(hops)-1].Forwarded
		if r.Purpose != PurposeLogin || r.NotHostbound || !(r.BindFailed || fwd && destBound) {
			continue
		}
		ud := tc.ud
		if ud == "" {
			ud = "confirm"
		}
		t.Run(tc.name, func(t *testing.T) {
			n++
			d := pol[ud].Decide(r)
			shown, why := pol[ud].Visible(r)
			if shown != (d.Verdict != Deny) {
				t.Errorf("Visible = %v (%s), Decide = %v by %q (%s)", shown, why.Rule, d.Verdict, d.Rule, d.Reason)
			}
			if !shown && why.Rule != d.Rule {
				t.Errorf("hidden by %q, refused by %q", why.Rule, d.Rule)
			}
		})
	}
	if n < 15 {
		t.Fatalf("only %d rows compared; the table lost its forwarded rows", n)
	}
}

// clientRows are the Decide rows for clients and [[client]] sections.
func clientRows(w *world) []decideRow {
	fwd := func(k ssh.PublicKey) Hop { return Hop{HostKey: k, Forwarded: true} }
	dst := func(k ssh.PublicKey) Hop { return Hop{HostKey: k} }
	key := func(c string) Key { return Key{Comment: c, Fingerprint: "SHA256:" + strings.Repeat("A", 43)} }
	chain := func(procs ...string) *Client {
		c := &Client{}
		for i, p := range procs {
			name, exe, _ := strings.Cut(p, "=")
			c.Chain = append(c.Chain, Proc{PID: 100 - i, Name: name, Exe: exe})
		}
		return c
	}
	viaGit := chain("ssh=/usr/bin/ssh", "git=/usr/bin/git", "zsh=/usr/bin/zsh")
	shell := chain("ssh=/usr/bin/ssh", "zsh=/usr/bin/zsh")
	claude := chain("ssh=/usr/bin/ssh", "git=/usr/bin/git", "claude=/usr/bin/node", "zsh=/usr/bin/zsh")
	wrapper := chain("ssh=/usr/bin/ssh", "wrapper.sh=/usr/bin/dash", "bash=/usr/bin/bash")
	gone := &Client{Unreadable: "process gone"}
	inCron := chain("ssh=/usr/bin/ssh", "sh=/usr/bin/dash")
	inCron.Unit, inCron.Cgroup = "cron.service", "/system.slice/cron.service"
	inCgroup := chain("ssh=/usr/bin/ssh")
	inCgroup.Cgroup = "/safe-agent-test-42"
	inDocker := chain("ssh=/usr/bin/ssh")
	inDocker.Container = "docker"
	const fp = "(SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA)"

	type row = decideRow
	return []row{
		// clients = [...] on a key.
		{name: "clients: git in the chain logs in", req: Request{Key: key("gitonly"), Hops: []Hop{dst(w.jump.pub)}, User: "git", Client: viaGit},
			kind: FindAllowed, verdict: Allow, rule: `key "gitonly"`,
			reason: `Allowed: key "gitonly" ` + fp + ` may log in as git to jump.example (here → jump.example): [defaults] has no allow list; it comes from git (99), which clients entry "git" in [[key]] match "gitonly" lets use the key (chain: ssh (100) ← git (99) ← zsh (98)).`},
		{name: "clients: a shell login refused, chain in the reason", req: Request{Key: key("gitonly"), Hops: []Hop{dst(w.jump.pub)}, User: "git", Client: shell},
			kind: FindNotClient, verdict: Deny, rule: `key "gitonly" clients`,
			reason: `Refused: key "gitonly" ` + fp + ` may not log in as git to jump.example: the request comes from ssh (100) ← zsh (99), and [[key]] match "gitonly" lets only clients = ["git", "/usr/bin/ssh-keygen"] use the key; none of them is in the chain. To let this program use it, add its name or executable path to clients in /etc/policy.toml.`},
		{name: "clients: the name is the process name or the executable's, not a look-alike", req: Request{Key: key("gitonly"), Hops: []Hop{dst(w.jump.pub)}, Client: chain("ssh=/usr/bin/ssh", "gitk=/usr/bin/wish")},
			kind: FindNotClient, verdict: Deny, rule: `key "gitonly" clients`},
		{name: "clients: an absolute path matches the executable", req: Request{Key: key("gitonly"), Purpose: PurposeSSHSIG, Namespace: "git", Client: chain("ssh-keygen=/usr/bin/ssh-keygen", "zsh=/usr/bin/zsh")},
			kind: FindAllowed, verdict: Allow, rule: `defaults namespaces[0]`},
		{name: "clients: the same name at another path does not", req: Request{Key: key("gitonly"), Purpose: PurposeSSHSIG, Namespace: "git", Client: chain("ssh-keygen=/tmp/ssh-keygen", "zsh=/usr/bin/zsh")},
			kind: FindNotClient, verdict: Deny, rule: `key "gitonly" clients`},
		{name: "clients: a process gone is refused", req: Request{Key: key("gitonly"), Hops: []Hop{dst(w.jump.pub)}, Client: gone},
			kind: FindNotClient, verdict: Deny, rule: `key "gitonly" clients`,
			reason: `Refused: key "gitonly" ` + fp + ` may not log in to jump.example: the requesting program cannot be identified (process gone), and [[key]] match "gitonly" lets only clients = ["git", "/usr/bin/ssh-keygen"] use the key.`},
		{name: "clients: no chain given is refused", req: Request{Key: key("gitonly"), Hops: []Hop{dst(w.jump.pub)}},
			kind: FindNotClient, verdict: Deny, rule: `key "gitonly" clients`},
		{name: "clients: forwarded login from git allowed", req: Request{Key: key("gitonly"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, Client: viaGit},
			kind: FindAllowed, verdict: Allow, rule: `key "gitonly"`},
		{name: "clients: forwarded login from a shell refused", req: Request{Key: key("gitonly"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, Client: shell},
			kind: FindNotClient, verdict: Deny, rule: `key "gitonly" clients`},
		{name: "clients: unit matches", req: Request{Key: key("sandboxed"), Hops: []Hop{dst(w.jump.pub)}, Client: inCron},
			kind: FindAllowed, verdict: Allow, rule: `key "sandboxed"`},
		{name: "clients: cgroup glob matches", req: Request{Key: key("sandboxed"), Hops: []Hop{dst(w.jump.pub)}, Client: inCgroup},
			kind: FindAllowed, verdict: Allow, rule: `key "sandboxed"`},
		{name: "clients: container:* matches any container", req: Request{Key: key("sandboxed"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, Client: inDocker},
			kind: FindTooDeep, verdict: Deny, rule: `client "container:docker" max_forward_depth`},
		{name: "clients: no unit, cgroup or container refused", req: Request{Key: key("sandboxed"), Hops: []Hop{dst(w.jump.pub)}, Client: shell},
			kind: FindNotClient, verdict: Deny, rule: `key "sandboxed" clients`},

		// [[client]] sections.
		{name: "client: assistant login to an allowed host asks", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.jump.pub)}, User: "git", Client: claude},
			kind: FindConfirmAlways, verdict: Confirm, rule: `client "assistants" confirm`, remember: time.Minute,
			reason: `Ask first: key "nobody" ` + fp + ` would log in as git to jump.example (here → jump.example): confirm = "always" in [[client]] "assistants" (it applies: claude (98, /usr/bin/node), in the chain ssh (100) ← git (99) ← claude (98) ← zsh (97)).`},
		{name: "client: assistant login elsewhere refused by its allow list", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.other.pub)}, Client: claude},
			kind: FindNotAllowed, verdict: Deny, rule: `client "assistants" allow`,
			reason: `Refused: key "nobody" ` + fp + ` may not log in to other.example (here → other.example): the destination, other.example, is not allowed by [[client]] "assistants" (it applies: claude (98, /usr/bin/node), in the chain ssh (100) ← git (99) ← claude (98) ← zsh (97)) (allow = ["jump.example", "jump.example>db.internal"]). To permit it, add "other.example" to that allow list in /etc/policy.toml.`},
		{name: "client: the same login from a shell is not restricted", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.other.pub)}, Client: shell},
			kind: FindAllowed, verdict: Allow, rule: `defaults`},
		{name: "client: the key's own allow list still applies", req: Request{Key: key("jumponly"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, Client: claude},
			kind: FindTooDeep, verdict: Deny, rule: `key "jumponly" max_forward_depth`},
		{name: "client: forwarded assistant login allowed by both lists asks", req: Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, Client: claude},
			kind: FindConfirmAlways, verdict: Confirm, rule: `client "assistants" confirm`, remember: time.Minute},
		{name: "client: forwarded assistant login outside its list refused", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.other.pub)}, Client: claude},
			kind: FindNotAllowed, verdict: Deny, rule: `client "assistants" allow`},
		{name: "client: assistant SSHSIG in its namespace asks", req: Request{Key: key("nobody"), Purpose: PurposeSSHSIG, Namespace: "git", Client: claude},
			kind: FindConfirmAlways, verdict: Confirm, rule: `client "assistants" confirm`, remember: time.Minute},
		{name: "client: assistant SSHSIG outside its namespaces refused", req: Request{Key: key("nobody"), Purpose: PurposeSSHSIG, Namespace: "file", Client: claude},
			kind: FindNamespace, verdict: Deny, rule: `client "assistants" namespaces`,
			reason: `Refused: key "nobody" ` + fp + ` may not make an SSHSIG signature (ssh-keygen -Y sign, namespace "file"): namespaces in [[client]] "assistants" (it applies: claude (98, /usr/bin/node), in the chain ssh (100) ← git (99) ← claude (98) ← zsh (97)) are "git". Add "file" to namespaces there in /etc/policy.toml to allow it.`},
		{name: "client: a yes is remembered for the shorter time", req: Request{Key: key("always"), Hops: []Hop{dst(w.jump.pub)}, Client: chain("codex=/usr/bin/codex")},
			kind: FindConfirmAlways, verdict: Confirm, rule: `key "always" confirm`, remember: time.Minute},
		{name: "client: keys limits the section to matching keys", req: Request{Key: key("work-1"), Hops: []Hop{dst(w.jump.pub)}, Client: wrapper},
			kind: FindConfirmAlways, verdict: Confirm, rule: `client "wrapper.sh" confirm`, remember: 5 * time.Minute},
		{name: "client: a key keys does not match is not restricted", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.jump.pub)}, Client: wrapper},
			kind: FindAllowed, verdict: Allow, rule: `defaults`},
		{name: "client: a container's deny list applies", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.other.pub)}, Client: inDocker},
			kind: FindDenied, verdict: Deny, rule: `client "container:docker" deny[0]`},
		{name: "client: a process gone escapes no [[client]] section", req: Request{Key: key("nobody"), Hops: []Hop{dst(w.other.pub)}, Client: gone},
			kind: FindClientUnknown, verdict: Deny, rule: `client "assistants" match`,
			reason: `Refused: key "nobody" ` + fp + ` may not log in to other.example: the requesting program cannot be identified (process gone), and [[client]] "assistants" adds restrictions for some programs that may use this key; a program that cannot be identified gets no fewer.`},
		{name: "client: a process gone, forwarded", req: Request{Key: key("nobody"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}, Client: gone},
			kind: FindClientUnknown, verdict: Deny, rule: `client "assistants" match`},
	}
}

func TestParseClient(t *testing.T) {
	c, err := ParseClient("ssh (1240) ← /usr/bin/git <- zsh < unit:cron.service<container:docker")
	if err != nil {
		t.Fatal(err)
	}
	want := []Proc{{Name: "ssh"}, {Name: "git", Exe: "/usr/bin/git"}, {Name: "zsh"}}
	if !slices.Equal(c.Chain, want) || c.Unit != "cron.service" || c.Container != "docker" {
		t.Errorf("ParseClient = %+v", c)
	}
	if got := c.Text(); got != "ssh ← git ← zsh, unit cron.service, in a docker container" {
		t.Errorf("Text = %q", got)
	}
	for _, bad := range []string{"", "ssh ← ← zsh", "git*", "bin/git"} {
		if _, err := ParseClient(bad); err == nil {
			t.Errorf("ParseClient(%q): no error", bad)
		}
	}
}

// The finding says as data what the rule and the sentence say: which
// section, list, entry and hop decided.
func TestDecideFinding(t *testing.T) {
	w := newWorld(t)
	pol := decidePolicies(t, w)["confirm"]
	key := func(c string) Key { return Key{Comment: c, Fingerprint: "SHA256:" + strings.Repeat("A", 43)} }
	fwd := func(k ssh.PublicKey) Hop { return Hop{HostKey: k, Forwarded: true} }
	dst := func(k ssh.PublicKey) Hop { return Hop{HostKey: k} }
	tests := []struct {
		name string
		req  Request
		want Finding
	}{
		{"allow entry admits the destination", Request{Key: key("chain"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			Finding{Kind: FindAllowed, Source: `key "chain"`, List: "allow", Entry: 1, Hop: 1}},
		{"deny entry, at the hop it matched", Request{Key: key("denywins"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			Finding{Kind: FindDenied, Source: `key "denywins"`, List: "deny", Entry: 0, Hop: 1}},
		{"the key's own allow list", Request{Key: key("nobody"), Settings: Settings{Allow: []string{"jump.example"}}, Hops: []Hop{fwd(w.jump.pub), dst(w.other.pub)}},
			Finding{Kind: FindNotAllowed, Source: "stored settings", List: "allow", Entry: -1, Hop: 1}},
		{"depth limit: where it is set", Request{Key: key("jumponly"), Hops: []Hop{fwd(w.jump.pub), dst(w.db.pub)}},
			Finding{Kind: FindTooDeep, Source: `key "jumponly"`, Entry: -1, Hop: -1}},
		{"ssh-add -c asks", Request{Key: key("nobody"), Settings: Settings{Confirm: true}, Hops: []Hop{dst(w.jump.pub)}},
			Finding{Kind: FindConfirmKey, Source: "stored settings", Entry: -1, Hop: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := pol.Decide(tc.req).Finding
			if got != tc.want {
				t.Errorf("finding = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A Confirm decision that was not confirmed reads as one sentence: the
// question, then why not, with no full stop in the middle.
func TestDecisionUnconfirmed(t *testing.T) {
	w := newWorld(t)
	pol := decidePolicies(t, w)["confirm"]
	d := pol.Decide(Request{Key: Key{Comment: "always"}, Hops: []Hop{{HostKey: w.jump.pub}}, User: "me"})
	want := `Ask first: key "always" would log in as me to jump.example (here → jump.example): confirm = "always" in [[key]] match "always"; not confirmed (the person said no)`
	if got := d.Unconfirmed("the person said no"); got != want {
		t.Errorf("Unconfirmed:\n got %s\nwant %s", got, want)
	}
	if got := (Decision{Reason: "made elsewhere"}).Unconfirmed("x"); got != "made elsewhere; not confirmed (x)" {
		t.Errorf("Unconfirmed of a hand-made decision = %q", got)
	}
}
