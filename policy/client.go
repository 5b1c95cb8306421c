package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Client rules: which programs may use a key (clients = […] in [defaults]
// or a [[key]] section) and what [[client]] sections add for the programs
// they match. A pattern is tested against every process of the request's
// chain (the requesting process and its parents), and against the
// requesting process's systemd unit, cgroup and container.
//
// What the chain is worth: the agent reads it from the kernel (/proc), not
// from anything the client says, and never from argv[0]. A process's name
// (comm) is set from the file it executed, which for a script is the
// script's own name, but the process may change it later, and a program
// running as the same user can ptrace or LD_PRELOAD an allowed program.
// Client rules keep mistakes and unattended tools in bounds; they do not
// stop an adversary who already runs code as the user.

// Proc is one process of a request's chain.
type Proc struct {
	PID  int
	Name string // /proc/PID/comm: the executed file's name (a script's own name), at most 15 bytes
	Exe  string // readlink /proc/PID/exe: the executable (for a script, its interpreter); "" if unreadable
}

// Client is the process that asked for a signature, as the agent read it
// from the kernel when the connection was made.
type Client struct {
	Chain     []Proc // the requesting process first, then its parents (up to ~8)
	Unit      string // systemd unit of the requesting process, from its cgroup ("" unknown)
	Cgroup    string // cgroup v2 path of the requesting process ("/user.slice/…")
	Container string // "docker", "podman", "lxc", "flatpak", "snap"… when /proc shows one; ""
	// Unreadable, when not empty, says why the chain cannot be trusted
	// (the process is gone, /proc could not be read): then no client
	// pattern matches, and a key limited by clients is refused.
	Unreadable string
}

// Text is the chain as people read it: "ssh (1240) ← git (1239) ← zsh (1000)",
// with the unit and container when known.
func (c *Client) Text() string {
	if c == nil {
		return "an unknown process"
	}
	if c.Unreadable != "" {
		return "an unidentified process (" + c.Unreadable + ")"
	}
	parts := make([]string, len(c.Chain))
	for i, p := range c.Chain {
		name := p.Name
		if name == "" {
			name = baseName(p.Exe)
		}
		if name == "" {
			name = "?"
		}
		parts[i] = name
		if p.PID != 0 { // 0: a chain written by hand (policy explain --client)
			parts[i] += " (" + strconv.Itoa(p.PID) + ")"
		}
	}
	s := strings.Join(parts, " ← ")
	if s == "" {
		s = "an unknown process"
	}
	if c.Unit != "" {
		s += ", unit " + c.Unit
	} else if c.Cgroup != "" && c.Cgroup != "/" {
		s += ", cgroup " + c.Cgroup
	}
	if c.Container != "" {
		s += ", in a " + c.Container + " container"
	}
	return s
}

// clientKind is what a client pattern is tested against.
type clientKind uint8

const (
	clientName      clientKind = iota // a process name or executable base name glob
	clientPath                        // an absolute executable path glob
	clientUnit                        // unit:GLOB
	clientCgroup                      // cgroup:GLOB
	clientContainer                   // container:GLOB
)

// clientPattern is one compiled entry of clients or of a [[client]] match.
type clientPattern struct {
	raw  string
	kind clientKind
	glob string
}

// CheckClientPattern reports whether s is a valid client pattern, with a
// message a person can act on.
func CheckClientPattern(s string) error {
	_, err := compileClientPattern(s)
	return err
}

func compileClientPattern(s string) (clientPattern, error) {
	if strings.TrimSpace(s) == "" || strings.TrimSpace(s) != s {
		return clientPattern{}, fmt.Errorf("client pattern %q: write a program name like \"git\", an absolute path like \"/usr/bin/ssh\", \"unit:NAME\", \"cgroup:/PATH\" or \"container:NAME\"", s)
	}
	for _, pre := range []struct {
		p    string
		kind clientKind
	}{{"unit:", clientUnit}, {"cgroup:", clientCgroup}, {"container:", clientContainer}} {
		if g, ok := strings.CutPrefix(s, pre.p); ok {
			if g == "" {
				return clientPattern{}, fmt.Errorf("client pattern %q names nothing after %s: write it like %q", s, pre.p, pre.p+clientExample(pre.kind))
			}
			if pre.kind == clientCgroup && !strings.HasPrefix(g, "/") && !strings.HasPrefix(g, "*") {
				return clientPattern{}, fmt.Errorf("client pattern %q: a cgroup path starts with / (cat /proc/self/cgroup shows yours), like \"cgroup:/user.slice/*\"", s)
			}
			return clientPattern{raw: s, kind: pre.kind, glob: g}, nil
		}
	}
	switch {
	case strings.HasPrefix(s, "/"):
		return clientPattern{raw: s, kind: clientPath, glob: s}, nil
	case strings.HasPrefix(s, "~"):
		return clientPattern{}, fmt.Errorf("client pattern %q: ~ is not expanded; write the full path", s)
	case strings.ContainsRune(s, '/'):
		return clientPattern{}, fmt.Errorf("client pattern %q: a path must be absolute (like \"/usr/bin/ssh\"); a name has no /", s)
	case strings.ContainsRune(s, ':'):
		return clientPattern{}, fmt.Errorf("client pattern %q: unknown prefix; use unit:, cgroup: or container:, or a plain program name", s)
	}
	return clientPattern{raw: s, kind: clientName, glob: s}, nil
}

func clientExample(k clientKind) string {
	switch k {
	case clientUnit:
		return "cron.service"
	case clientCgroup:
		return "/user.slice/*"
	}
	return "*"
}

// match says what in c matched the pattern ("git (1239)", "unit
// cron.service"), or "" when nothing did. An unreadable chain matches
// nothing.
func (cp clientPattern) match(c *Client) string {
	if c == nil || c.Unreadable != "" {
		return ""
	}
	switch cp.kind {
	case clientUnit:
		if c.Unit != "" && globMatch(cp.glob, c.Unit) {
			return "unit " + c.Unit
		}
	case clientCgroup:
		if c.Cgroup != "" && globMatch(cp.glob, c.Cgroup) {
			return "cgroup " + c.Cgroup
		}
	case clientContainer:
		if c.Container != "" && globMatch(cp.glob, c.Container) {
			return "a " + c.Container + " container"
		}
	default:
		for _, p := range c.Chain {
			if cp.matchProc(p) {
				return procText(p)
			}
		}
	}
	return ""
}

func (cp clientPattern) matchProc(p Proc) bool {
	if cp.kind == clientPath {
		return p.Exe != "" && globMatch(cp.glob, p.Exe)
	}
	return p.Name != "" && globMatch(cp.glob, p.Name) || p.Exe != "" && globMatch(cp.glob, baseName(p.Exe))
}

func procText(p Proc) string {
	name := p.Name
	if name == "" {
		name = baseName(p.Exe)
	}
	var in []string
	if p.PID != 0 {
		in = append(in, strconv.Itoa(p.PID))
	}
	if p.Exe != "" && baseName(p.Exe) != name {
		in = append(in, p.Exe)
	}
	if len(in) == 0 {
		return name
	}
	return name + " (" + strings.Join(in, ", ") + ")"
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// matchClients is the first pattern of ps that matches c: what matched,
// and the pattern; "" when none does.
func matchClients(ps []clientPattern, c *Client) (what, pattern string) {
	for _, p := range ps {
		if w := p.match(c); w != "" {
			return w, p.raw
		}
	}
	return "", ""
}

func clientList(ps []clientPattern) string {
	q := make([]string, len(ps))
	for i, p := range ps {
		q[i] = strconv.Quote(p.raw)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// clientRule is a [[client]] section: restrictions added to every key it
// covers when a request comes from a program it matches.
type clientRule struct {
	section string // `client "coding assistants"`
	match   []clientPattern
	keys    []*rule // key matches (kind, match, value only); none: every key

	allow, deny []destPattern
	maxDepth    int
	hasDepth    bool
	confirm     confirmMode
	hasConfirm  bool
	remember    time.Duration
	hasRemember bool
	namespaces  []string // nil: not restricted
}

func (cr *clientRule) coversKey(k Key) bool {
	if len(cr.keys) == 0 {
		return true
	}
	for _, r := range cr.keys {
		if r.matches(k) {
			return true
		}
	}
	return false
}

// appliedClient is a [[client]] section that applies to a request, with
// what in the chain made it apply.
type appliedClient struct {
	cr  *clientRule
	why string
}

// clientRulesFor lists every [[client]] section that covers r's key and
// matches its client, in file order.
func (p *Policy) clientRulesFor(r *Request) []appliedClient {
	if len(p.clientRules) == 0 || r.Client == nil || r.Client.Unreadable != "" {
		return nil
	}
	var out []appliedClient
	for _, cr := range p.clientRules {
		if !cr.coversKey(r.Key) {
			continue
		}
		if why, _ := matchClients(cr.match, r.Client); why != "" {
			out = append(out, appliedClient{cr, why})
		}
	}
	return out
}

// checkClients refuses a key limited by clients when no process of the
// chain (nor its unit, cgroup, container) is listed. It also refuses a
// request whose chain could not be read (the process is gone) when some
// [[client]] section covers the key: that section might have matched,
// and a program nobody can name must not get less restriction than one
// that can be named.
func (d *decider) checkClients() *finding {
	if d.ru.clients != nil {
		if why, _ := matchClients(d.ru.clients, d.r.Client); why == "" {
			f := refusal(FindNotClient, d.ru.clientsSrc+" clients")
			f.src = d.ru.clientsSrc
			return f
		}
	}
	if c := d.r.Client; c != nil && c.Unreadable != "" {
		for _, cr := range d.p.clientRules {
			if cr.coversKey(d.r.Key) {
				f := refusal(FindClientUnknown, cr.section+" match")
				f.src = cr.section
				return f
			}
		}
	}
	return nil
}

// clientUnknown explains a FindClientUnknown refusal.
func (d *decider) clientUnknown(act, src string) string {
	return fmt.Sprintf("Refused: key %s may not %s: the requesting program cannot be identified (%s), and %s adds restrictions for some programs that may use this key; a program that cannot be identified gets no fewer.",
		d.keyName(), act, d.r.Client.Unreadable, sectionText(src))
}

// clientsMiss explains a FindNotClient refusal.
func (d *decider) clientsMiss(act string) string {
	c := d.r.Client
	src := d.ru.clientsSrc
	lim := fmt.Sprintf("%s lets only clients = %s use the key", sectionText(src), clientList(d.ru.clients))
	switch {
	case c == nil:
		return fmt.Sprintf("Refused: key %s may not %s: the requesting program is not known (policy explain: pass --client or --client-pid), and %s.", d.keyName(), act, lim)
	case c.Unreadable != "":
		return fmt.Sprintf("Refused: key %s may not %s: the requesting program cannot be identified (%s), and %s.", d.keyName(), act, c.Unreadable, lim)
	}
	fix := " To let this program use it, add its name or executable path to clients"
	if src == storedSrc {
		fix += " (remove the key and add it again)."
	} else {
		fix += " in " + d.fileText() + "."
	}
	return fmt.Sprintf("Refused: key %s may not %s: the request comes from %s, and %s; none of them is in the chain.%s", d.keyName(), act, c.Text(), lim, fix)
}

// clientNote, for a source that is a [[client]] section, says why it
// applies: the process (or unit, cgroup, container) it matched, in the
// chain. Other sources get "".
func (d *decider) clientNote(src string) string {
	for _, ac := range d.clients {
		if ac.cr.section == src {
			return fmt.Sprintf(" (it applies: %s, in the chain %s)", ac.why, d.r.Client.Text())
		}
	}
	return ""
}

// srcText is sectionText, with the reason a [[client]] section applies.
func (d *decider) srcText(src string) string {
	return sectionText(src) + d.clientNote(src)
}

// clientNamespaces checks an SSHSIG namespace against every [[client]]
// section that restricts namespaces: the first that does not list it
// refuses.
func (d *decider) clientNamespaces(act string) *Decision {
	for _, ac := range d.clients {
		ns := ac.cr.namespaces
		if ns == nil || slices.Contains(ns, d.r.Namespace) {
			continue
		}
		dec := deny(found(FindNamespace, ac.cr.section, "namespaces"), ac.cr.section+" namespaces", fmt.Sprintf(
			"Refused: key %s may not %s: namespaces in %s are %s. Add %q to namespaces there in %s to allow it.",
			d.keyName(), act, d.srcText(ac.cr.section), nsList(ns), d.r.Namespace, d.fileText()))
		return &dec
	}
	return nil
}

// clientAsks are the causes to ask that [[client]] sections add: confirm
// = "always", or "forwarded" on a path through a forwarded agent.
func (d *decider) clientAsks(depth int) []reason {
	var out []reason
	for _, ac := range d.clients {
		if !ac.cr.hasConfirm {
			continue
		}
		src := ac.cr.section
		switch {
		case ac.cr.confirm == confirmAlways:
			out = append(out, reason{found(FindConfirmAlways, src, ""), src + " confirm", fmt.Sprintf("confirm = \"always\" in %s", d.srcText(src))})
		case ac.cr.confirm == confirmForwarded && depth >= 1:
			out = append(out, reason{found(FindConfirmForwarded, src, ""), src + " confirm", fmt.Sprintf("confirm = \"forwarded\" in %s asks for every use through a forwarded agent", d.srcText(src))})
		}
	}
	return out
}

// clientsOK completes an allowed reason for a key limited by clients:
// which process of the chain is listed.
func (d *decider) clientsOK() string {
	if d.ru.clients == nil {
		return ""
	}
	what, pat := matchClients(d.ru.clients, d.r.Client)
	return fmt.Sprintf("; it comes from %s, which clients entry %q in %s lets use the key (chain: %s)", what, pat, sectionText(d.ru.clientsSrc), d.r.Client.Text())
}

// HasClientRules reports whether any rule looks at the requesting
// process (clients in [defaults] or a [[key]], or a [[client]] section):
// only then is the process re-checked when a request is decided.
func (p *Policy) HasClientRules() bool { return p.hasClients }

// anyClientRules is HasClientRules, worked out once per policy: it looks
// at every rule, and the agent asks twice per signature.
func (p *Policy) anyClientRules() bool {
	if len(p.clientRules) > 0 || p.defaults.clients != nil {
		return true
	}
	for _, r := range p.rules {
		if r.clients != nil {
			return true
		}
	}
	return false
}

// ParseClient reads a process chain as people write it, the requesting
// process first: "ssh ← git ← zsh" ("<-" or "<" also separate). Each
// element is a process name, an absolute executable path, or unit:NAME,
// cgroup:/PATH or container:NAME for the requesting process; a "(1234)"
// after a name, as prompts and the audit log show chains, is ignored.
// For `policy explain --client`.
func ParseClient(s string) (*Client, error) {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "←", "<"), "<-", "<")
	c := &Client{}
	for _, e := range strings.Split(s, "<") {
		e = strings.TrimSpace(e)
		if i := strings.Index(e, " ("); i > 0 && strings.HasSuffix(e, ")") {
			e = e[:i]
		}
		if e == "" {
			return nil, fmt.Errorf("empty process in %q: write the chain like \"ssh ← git ← zsh\", the requesting process first", s)
		}
		cp, err := compileClientPattern(e)
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(e, "*?") {
			return nil, fmt.Errorf("%q: a chain names processes, not patterns", e)
		}
		switch cp.kind {
		case clientUnit:
			c.Unit = cp.glob
		case clientCgroup:
			c.Cgroup = cp.glob
		case clientContainer:
			c.Container = cp.glob
		case clientPath:
			c.Chain = append(c.Chain, Proc{Name: baseName(e), Exe: e})
		default:
			c.Chain = append(c.Chain, Proc{Name: e})
		}
	}
	return c, nil
}
