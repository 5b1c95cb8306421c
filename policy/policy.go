// Package policy is safe-agent's policy engine: the policy file model, an
// index that gives host keys the names known_hosts knows them by, and
// Decide, a pure function from a sign request to allow, deny or confirm.
//
// Load and Parse do all I/O (the policy file and the known_hosts files it
// names). A *Policy is immutable afterwards and safe for concurrent use;
// Decide, Visible and HostNames read no files and no clock.
//
// Built-in defaults, used for fields a file omits and by Default:
//
//	known_hosts         = ["~/.ssh/known_hosts"]
//	unknown_destination = "confirm"
//	confirm_timeout     = "30s"
//	notify              = "denied"
//	refusal_memory      = "10s"
//	audit_mirror        = "none"  # or "journal", "syslog": a copy of each audit record
//	[defaults]
//	confirm             = "forwarded"
//	max_forward_depth   = 1
//	remember            = "0s"  # a yes is never remembered unless the file says so
//	namespaces          = any
//	allow, deny         = none (any host, within max_forward_depth)
//	clients             = any program
//
// Client rules (clients in [defaults] or a [[key]], [[client]] sections)
// look at Request.Client, the requesting process chain; see client.go.
//
// Host naming. A hop's host key gets names from known_hosts: plain names
// and "[host]:port" (lower-cased; "[host]:22" is "host", as OpenSSH writes
// it), minus names a "!pattern" on the same line excludes. Hashed |1| entries
// are matched only against the literal names the policy file itself
// mentions, never guessed, so globs never match a hashed host: name such
// hosts literally or by fingerprint. A wildcard line ("*.internal key")
// gives its key the pattern as a name that stands for "some host matching
// it": an allow entry matches it only when the entry covers the whole
// pattern (allow "*.internal" covers "db*.internal"), a deny entry
// whenever the two could name the same host. An @cert-authority line names
// a host certificate signed by that CA with the certificate's principals
// that the line's host patterns cover; the CA signature, certificate type
// and (in Decide) validity period at Request.Now are checked. An @revoked
// key (plain, certified or CA) gets no names and every login to it is
// refused, whatever host pattern the @revoked line carries.
//
// Destination patterns (allow, deny): a host name or '*'/'?' glob matched
// against a hop's names, "[host]:port", a host key fingerprint "SHA256:…"
// (for a certificate: the certified key, the CA key or the certificate),
// or "a>b": b, only when the hop right before it is a. Globs match named
// hosts only; a host known_hosts cannot name is governed by
// unknown_destination or a fingerprint entry.
package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/internal/hint"
)

// Verdict is the outcome of a decision. The zero value is Deny, so a
// Decision nobody filled in refuses.
type Verdict int

const (
	Deny Verdict = iota
	Allow
	Confirm
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Confirm:
		return "confirm"
	default:
		return "deny"
	}
}

// Purpose is what a signature is for.
type Purpose int

const (
	PurposeLogin  Purpose = iota // SSH_MSG_USERAUTH_REQUEST
	PurposeSSHSIG                // ssh-keygen -Y sign
	PurposeOpaque                // anything else
)

func (p Purpose) String() string {
	switch p {
	case PurposeLogin:
		return "login"
	case PurposeSSHSIG:
		return "sshsig"
	default:
		return "opaque"
	}
}

// Notify is when the person is told about a decision (top-level notify).
type Notify string

const (
	NotifyNever     Notify = "never"
	NotifyDenied    Notify = "denied"
	NotifyForwarded Notify = "forwarded"
	NotifyAlways    Notify = "always"
)

// DefaultConfirmTimeout is how long a prompt waits when the file does not
// set confirm_timeout.
const DefaultConfirmTimeout = 30 * time.Second

// DefaultRefusalMemory is how long a "no" (or an unanswered prompt) on a
// connection refuses that connection's further sign requests, when the
// file does not set refusal_memory: ssh offers the next key right after a
// refusal, and asking again about the request just refused is a second
// chance to click yes by mistake.
const DefaultRefusalMemory = 10 * time.Second

// MaxRefusalMemory bounds refusal_memory: it is meant to cover ssh
// offering its other keys, not to lock a connection out for long.
const MaxRefusalMemory = 10 * time.Minute

// Hop is one verified session-bind, in path order.
type Hop struct {
	// HostKey is the host key the bind was signed with; for a host
	// certificate pass the *ssh.Certificate so @cert-authority lines apply.
	// nil stands for a host whose key is not known (policy explain).
	HostKey   ssh.PublicKey
	Forwarded bool // the bind's is_forwarding flag
}

// Key identifies the key asked to sign.
type Key struct {
	Fingerprint string // SHA256:… of the key (for a certificate: the certified key)
	Comment     string
	Type        string
	// Cert is the user certificate the key is used with, if any: a
	// certificate held in the agent, or the one a login names for the
	// plain key (ssh's CertificateFile). Build it with CertOf, which checks
	// the CA's signature: an unverified certificate must not select rules.
	Cert *Cert
}

// Cert is what the policy uses of a user certificate.
type Cert struct {
	CA          string   // SHA256 fingerprint of the CA key that signed it
	Principals  []string // empty: the certificate names none (and matches no principal: rule)
	KeyID       string
	ValidAfter  time.Time
	ValidBefore time.Time // zero: forever
}

// Settings are a key's own settings: given when it is added (safe-agent
// add, ssh-add -c/-t), stored with it, carried by the agent's identity.
// They only ever add restriction to what the policy file says. Lifetime is
// the agent's business (how long it keeps the key); Decide ignores it.
//
// keystore.Settings is the same struct field for field (keystore and
// policy never import each other); a Go conversion between the two is the
// only mapping, so the compiler catches any drift.
type Settings struct {
	Confirm         bool          // ask before every use
	Allow           []string      // destinations the key may be used for
	Deny            []string      // destinations it must never be used for
	MaxForwardDepth *int          // nil: the policy file decides
	Lifetime        time.Duration // how long the agent keeps the key; 0: no limit
}

// Request is everything Decide looks at.
type Request struct {
	Key      Key
	Settings Settings
	Hops     []Hop
	// BindFailed: a session-bind on this connection failed verification,
	// so it is never treated as local.
	BindFailed bool
	// NotHostbound: the login is a plain "publickey" signature, which does
	// not name the server it is for. Through a forwarded agent (a
	// forwarding hop on the path) such a login has no known destination,
	// whatever the last session-bind says: whoever holds the forwarded
	// socket can bind its own host and use the signature elsewhere.
	NotHostbound bool
	Purpose      Purpose
	User         string // login user
	Namespace    string // SSHSIG namespace
	// Now is the time host certificates are checked against. Zero: no
	// certificate gets names from @cert-authority lines (fail closed).
	Now time.Time
	// Client is the requesting process chain, for clients and [[client]]
	// rules. nil: not known, so no client pattern matches (a key limited
	// by clients is refused, no [[client]] section applies).
	Client *Client
}

// Decision is Decide's answer.
type Decision struct {
	Verdict Verdict
	// Finding is what decided, as data: branch on it, not on Reason.
	Finding Finding
	// Rule names what decided, e.g. `key "work" allow[1]`,
	// `defaults max_forward_depth`, `stored settings deny[0]`.
	Rule string
	// Reason is Text(): a sentence for a person (what was refused or
	// asked, why, and what to change), kept as a field for audit records.
	Reason string
	// Remember is how long a yes may be remembered; set only on Confirm.
	Remember time.Duration

	ask string // Confirm: Reason without its full stop, for Unconfirmed
}

type confirmMode int

const (
	confirmNever confirmMode = iota
	confirmAlways
	confirmForwarded
)

func (c confirmMode) String() string {
	return [...]string{"never", "always", "forwarded"}[c]
}

// rule is a [[key]] section (or [defaults]) with every field resolved:
// fields the section omits come from [defaults], and each remembers which
// section it came from, for Decision.Rule.
type rule struct {
	section string // `key "work-*"` or `defaults`
	match   string // the match string; "" for defaults
	kind    matchKind
	value   string // match without its "ca:"/"principal:" prefix

	allow, deny       []destPattern
	allowSrc, denySrc string
	maxDepth          int
	depthSrc          string
	confirm           confirmMode
	confirmSrc        string
	remember          time.Duration
	namespaces        []string // nil: any
	nsSrc             string
	clients           []clientPattern // nil: any program
	clientsSrc        string
}

// Policy is a loaded policy. Immutable (its deciders pool is scratch
// space, not state); safe for concurrent use.
type Policy struct {
	// deciders are reused by Decide: a decider is about a kilobyte, and
	// one per signature was most of what a request allocated.
	deciders sync.Pool

	name           string
	knownHosts     []string
	unknownDest    Verdict
	prompt         string
	confirmTimeout time.Duration
	notify         Notify
	refusalMemory  time.Duration
	auditMirror    string // "journal", "syslog"; "" or "none": no mirror
	// upstreams are the sockets of agents whose keys safe-agent fronts
	// (top-level upstream, expanded); upstreamTimeout bounds one sign.
	upstreams       []string
	upstreamTimeout time.Duration

	defaults *rule
	rules    []*rule
	ruleFP   map[string]int // fingerprint → first rule index
	ruleGlob []globRule     // comment-glob rules, by literal prefix, then file order
	prefixes []int          // distinct literal prefix lengths, ascending
	ruleCA   map[string]int // CA fingerprint → first rule index
	rulePrin []int          // principal: rules, in file order

	clientRules []*clientRule // [[client]] sections, in file order
	hasClients  bool          // HasClientRules, worked out by buildRuleIndex

	index    *hostIndex
	warnings []string
}

func builtinDefaults() *rule {
	return &rule{
		section:    "defaults",
		allowSrc:   "defaults",
		denySrc:    "defaults",
		maxDepth:   1,
		depthSrc:   "defaults",
		confirm:    confirmForwarded,
		confirmSrc: "defaults",
		nsSrc:      "defaults",
	}
}

// Default returns the built-in policy. It reads no known_hosts file, so
// no host has a name; LoadDefaults is the same with ~/.ssh/known_hosts.
func Default() *Policy {
	p := &Policy{
		name:           "built-in defaults",
		unknownDest:    Confirm,
		confirmTimeout: DefaultConfirmTimeout,
		notify:         NotifyDenied,
		refusalMemory:  DefaultRefusalMemory,
		defaults:       builtinDefaults(),
		index:          newHostIndex(),
	}
	p.upstreamTimeout = DefaultUpstreamTimeout
	p.buildRuleIndex()
	return p
}

// LoadDefaults is the built-in policy with host names from
// ~/.ssh/known_hosts: what the agent runs when no policy file exists.
func LoadDefaults() (*Policy, error) {
	return Parse("built-in defaults", nil, os.ReadFile)
}

// DefaultPath is $XDG_CONFIG_HOME/safe-agent/policy.toml, or
// os.UserConfigDir()/safe-agent/policy.toml when XDG_CONFIG_HOME is unset.
func DefaultPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		d, err := os.UserConfigDir()
		if err != nil {
			return "", hint.Wrap(fmt.Errorf("find the policy file: %w", err), "set XDG_CONFIG_HOME to an absolute path")
		}
		dir = d
	}
	return filepath.Join(dir, "safe-agent", "policy.toml"), nil
}

// Load reads the policy file at path and the known_hosts files it names.
// A missing policy file is an error wrapping fs.ErrNotExist: the caller
// decides whether that means built-in defaults. An invalid file gives
// FileErrors, each printing as FILE:LINE:COL: message.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return Parse(path, data, os.ReadFile)
}

// Name is the file the policy came from ("built-in defaults" without one).
func (p *Policy) Name() string { return p.name }

// Warnings are problems that did not stop loading: a missing known_hosts
// file, skipped known_hosts lines, rules that can never apply.
func (p *Policy) Warnings() []string { return slices.Clone(p.warnings) }

// KnownHostsFiles are the known_hosts files read, with ~ expanded.
func (p *Policy) KnownHostsFiles() []string { return slices.Clone(p.knownHosts) }

// UnknownDestination is the verdict for a forwarded login whose destination
// known_hosts cannot name.
func (p *Policy) UnknownDestination() Verdict { return p.unknownDest }

// Prompt is the top-level prompt setting ("" when unset).
func (p *Policy) Prompt() string { return p.prompt }

// ConfirmTimeout is how long a prompt may wait for an answer.
func (p *Policy) ConfirmTimeout() time.Duration { return p.confirmTimeout }

// RefusalMemory is how long a refused prompt on a connection refuses that
// connection's later sign requests, for every key (0: not at all).
func (p *Policy) RefusalMemory() time.Duration { return p.refusalMemory }

// AuditMirror is where audit records are copied besides the audit file:
// "journal", "syslog" or "none" (the default).
func (p *Policy) AuditMirror() string {
	if p.auditMirror == "" {
		return "none"
	}
	return p.auditMirror
}

// DefaultUpstreamTimeout bounds one upstream sign request when the file
// does not set upstream_timeout: long enough for a hardware touch or a PIN.
const DefaultUpstreamTimeout = 30 * time.Second

// Upstreams are the sockets of the upstream agents the file names, with ~
// and $VARs expanded, in file order.
func (p *Policy) Upstreams() []string { return p.upstreams }

// UpstreamTimeout bounds one sign request sent to an upstream agent.
func (p *Policy) UpstreamTimeout() time.Duration { return p.upstreamTimeout }

// NotifyMode is when to tell the person about decisions.
func (p *Policy) NotifyMode() Notify { return p.notify }

// HostNames lists the names known_hosts gives hostKey (for prompts and the
// audit log). Hashed entries contribute only names the policy mentions; a
// wildcard line contributes its pattern. For a host certificate the CA
// signature is checked but not the validity period.
func (p *Policy) HostNames(hostKey ssh.PublicKey) []string {
	h := p.index.resolve(Hop{HostKey: hostKey}, certTime{})
	out := slices.Clone(h.names)
	for _, w := range h.wild {
		out = append(out, w.pat)
	}
	return out
}

// ResolveHost returns the host keys known_hosts lists for a host name,
// "[host]:port" or fingerprint, plain or hashed. It scans hashed entries, so
// it is for tools (`policy explain`), not for the request path.
func (p *Policy) ResolveHost(name string) []ssh.PublicKey {
	return p.index.lookupName(name)
}

// matchKind is what a [[key]] match names.
type matchKind int

const (
	matchComment     matchKind = iota // a comment glob: "work-*"
	matchFingerprint                  // "SHA256:…": the key (a certificate's certified key)
	matchCA                           // "ca:SHA256:…": certificates signed by that CA
	matchPrincipal                    // "principal:alice": certificates naming a matching principal
)

// certBased: the match selects certificates, not keys.
func (k matchKind) certBased() bool { return k == matchCA || k == matchPrincipal }

// buildRuleIndex prepares key matching: maps for fingerprints and CAs and,
// for comment globs, the rule indices keyed by the glob's literal prefix.
func (p *Policy) buildRuleIndex() {
	p.ruleFP = map[string]int{}
	p.ruleGlob = nil
	p.ruleCA = map[string]int{}
	p.rulePrin = nil
	lens := map[int]bool{}
	for i, r := range p.rules {
		switch r.kind {
		case matchFingerprint:
			if _, dup := p.ruleFP[r.match]; !dup {
				p.ruleFP[r.match] = i
			}
			continue
		case matchCA:
			if _, dup := p.ruleCA[r.value]; !dup {
				p.ruleCA[r.value] = i
			}
			continue
		case matchPrincipal:
			p.rulePrin = append(p.rulePrin, i)
			continue
		}
		pre := r.match
		if j := strings.IndexAny(pre, "*?"); j >= 0 {
			pre = pre[:j]
		}
		p.ruleGlob = append(p.ruleGlob, globRule{pre, i})
		lens[len(pre)] = true
	}
	for l := range lens {
		p.prefixes = append(p.prefixes, l)
	}
	slices.Sort(p.prefixes)
	// A sorted slice, not a map of slices: a tenth of the memory for a
	// policy of many rules.
	slices.SortStableFunc(p.ruleGlob, func(a, b globRule) int { return strings.Compare(a.pre, b.pre) })
	p.ruleGlob = slices.Clip(p.ruleGlob)
	p.hasClients = p.anyClientRules()
}

// globRule is a comment-glob rule's index under its literal prefix.
type globRule struct {
	pre  string
	rule int
}

// globRules are the comment-glob rules whose literal prefix is pre, in
// file order.
func (p *Policy) globRules(pre string) []globRule {
	i, _ := slices.BinarySearchFunc(p.ruleGlob, pre, func(g globRule, pre string) int { return strings.Compare(g.pre, pre) })
	j := i
	for j < len(p.ruleGlob) && p.ruleGlob[j].pre == pre {
		j++
	}
	return p.ruleGlob[i:j]
}

// ruleFor returns the first [[key]] in file order that matches k (by
// fingerprint, comment glob, or, for a key with a certificate, by the
// certificate's CA or a principal), or [defaults].
func (p *Policy) ruleFor(k Key) *rule {
	best := len(p.rules)
	if i, ok := p.ruleFP[k.Fingerprint]; ok && k.Fingerprint != "" {
		best = i
	}
	if k.Cert != nil {
		if i, ok := p.ruleCA[k.Cert.CA]; ok && i < best {
			best = i
		}
		for _, i := range p.rulePrin {
			if i >= best {
				break
			}
			if slices.ContainsFunc(k.Cert.Principals, func(pr string) bool { return globMatch(p.rules[i].value, pr) }) {
				best = i
				break
			}
		}
	}
	for _, l := range p.prefixes {
		if l > len(k.Comment) {
			break
		}
		for _, g := range p.globRules(k.Comment[:l]) {
			i := g.rule
			if i >= best {
				break
			}
			if globMatch(p.rules[i].match, k.Comment) {
				best = i
				break
			}
		}
	}
	if best < len(p.rules) {
		return p.rules[best]
	}
	return p.defaults
}

// MatchingSections lists, in file order, the match of every [[key]]
// section that matches k; the first one applies. More than one means the
// file order decides between them (`policy check` warns about that).
func (p *Policy) MatchingSections(k Key) []string {
	var out []string
	for _, r := range p.rules {
		if r.matches(k) {
			out = append(out, r.match)
		}
	}
	return out
}

func (r *rule) matches(k Key) bool {
	switch r.kind {
	case matchFingerprint:
		return k.Fingerprint != "" && r.match == k.Fingerprint
	case matchCA:
		return k.Cert != nil && r.value == k.Cert.CA
	case matchPrincipal:
		return k.Cert != nil && slices.ContainsFunc(k.Cert.Principals, func(pr string) bool { return globMatch(r.value, pr) })
	}
	return globMatch(r.match, k.Comment)
}
