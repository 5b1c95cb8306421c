package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

const storedSrc = "stored settings"

// stored is Settings compiled.
type stored struct {
	allow, deny []destPattern
	maxDepth    int
	hasDepth    bool
	confirm     bool
}

func compileSettings(s Settings) (stored, error) {
	st := stored{confirm: s.Confirm}
	for _, a := range s.Allow {
		p, err := compilePattern(a)
		if err != nil {
			return st, fmt.Errorf("allow: %w", err)
		}
		st.allow = append(st.allow, p)
	}
	for _, a := range s.Deny {
		p, err := compilePattern(a)
		if err != nil {
			return st, fmt.Errorf("deny: %w", err)
		}
		st.deny = append(st.deny, p)
	}
	if s.MaxForwardDepth != nil {
		st.maxDepth, st.hasDepth = *s.MaxForwardDepth, true
	}
	return st, nil
}

// list is one allow or deny list with where it came from.
type list struct {
	src     string // `key "work"`, `defaults` or `stored settings`
	field   string // allow | deny
	entries []destPattern
}

func (l list) rule(i int) string { return l.src + " " + l.field + "[" + strconv.Itoa(i) + "]" }

// decider holds one request while it is decided.
type decider struct {
	p      *Policy
	r      *Request // &req
	req    Request
	ru     *rule
	st     stored
	hops   []hop
	key    string // keyName's memo
	allows []list // every non-empty allow list that applies
	denies []list // every non-empty deny list that applies
	// clients are the [[client]] sections that apply to this request.
	clients []appliedClient

	listing  bool   // Visible: a list request, not a signature
	destRule string // the allow entry that admits the destination, once found
	// destList and destEntry are that entry as data.
	destList  *list
	destEntry int
	fin       finding // allowed's result
	// Room for the common case, so that deciding allocates little.
	buf      [2]hop
	allowBuf [2]list
	denyBuf  [1]list
}

// Decide decides one sign request. It is pure: no I/O, no clock (host
// certificates are checked against r.Now).
func (p *Policy) Decide(r Request) Decision {
	d, bad := p.newDecider(&r)
	if bad != nil {
		return *bad
	}
	defer p.release(d)
	if d.r.Purpose == PurposeLogin {
		return d.login()
	}
	return d.localOnly()
}

// release returns d to the pool. A Decision holds only strings and
// numbers, never a pointer into its decider, so d may be reused as soon
// as Decide (or Visible) has its result.
func (p *Policy) release(d *decider) {
	*d = decider{}
	p.deciders.Put(d)
}

// newDecider compiles what applies to a copy of r; stored settings that
// do not compile refuse.
func (p *Policy) newDecider(r *Request) (*decider, *Decision) {
	d, _ := p.deciders.Get().(*decider)
	if d == nil {
		d = new(decider)
	}
	d.p, d.req = p, *r
	d.r = &d.req
	d.ru = p.ruleFor(r.Key)
	st, err := compileSettings(r.Settings)
	if err != nil {
		bad := deny(found(FindBadSettings, storedSrc, ""), storedSrc, fmt.Sprintf("Refused: the settings stored with key %s are not valid (%v). Remove the key and add it again with valid --allow/--deny values.", d.keyName(), err))
		return nil, &bad
	}
	d.st = st
	d.hops = d.buf[:0]
	ct := certTime{now: r.Now, check: true}
	for _, h := range r.Hops {
		d.hops = append(d.hops, p.index.resolve(h, ct))
	}
	d.clients = p.clientRulesFor(r)
	d.allows, d.denies = d.allowLists(), d.denyLists()
	return d, nil
}

func deny(f Finding, rule, reason string) Decision {
	return Decision{Verdict: Deny, Finding: f, Rule: rule, Reason: reason}
}

// keyName is how reasons name the key, worked out when first needed (a
// list request that shows the key never needs it).
func (d *decider) keyName() string {
	if d.key == "" {
		d.key = keyLabel(d.r.Key)
	}
	return d.key
}

func keyLabel(k Key) string {
	if k.Cert != nil {
		plain := k
		plain.Cert = nil
		return keyLabel(plain) + " with " + k.Cert.Text()
	}
	switch {
	case k.Comment != "" && k.Fingerprint != "":
		return strconv.Quote(k.Comment) + " (" + k.Fingerprint + ")"
	case k.Comment != "":
		return strconv.Quote(k.Comment)
	case k.Fingerprint != "":
		return k.Fingerprint
	default:
		return "(unnamed key)"
	}
}

// sectionText names a rule source for people.
func sectionText(src string) string {
	switch {
	case src == "defaults":
		return "[defaults]"
	case src == storedSrc:
		return "the settings stored with the key (safe-agent add)"
	case strings.HasPrefix(src, "key "):
		return "[[key]] match " + src[len("key "):]
	case strings.HasPrefix(src, "client "):
		return "[[client]] " + src[len("client "):]
	}
	return src
}

// fileText says where to make a change.
func (d *decider) fileText() string {
	if d.p.name == "built-in defaults" {
		return "your policy file (`safe-agent policy check` shows where it goes)"
	}
	return d.p.name
}

func (d *decider) allowLists() []list {
	ls := d.allowBuf[:0]
	if len(d.ru.allow) > 0 {
		ls = append(ls, list{d.ru.allowSrc, "allow", d.ru.allow})
	}
	if len(d.st.allow) > 0 {
		ls = append(ls, list{storedSrc, "allow", d.st.allow})
	}
	for _, ac := range d.clients {
		if len(ac.cr.allow) > 0 {
			ls = append(ls, list{ac.cr.section, "allow", ac.cr.allow})
		}
	}
	return ls
}

func (d *decider) denyLists() []list {
	ls := d.denyBuf[:0]
	if len(d.ru.deny) > 0 {
		ls = append(ls, list{d.ru.denySrc, "deny", d.ru.deny})
	}
	if len(d.st.deny) > 0 {
		ls = append(ls, list{storedSrc, "deny", d.st.deny})
	}
	for _, ac := range d.clients {
		if len(ac.cr.deny) > 0 {
			ls = append(ls, list{ac.cr.section, "deny", ac.cr.deny})
		}
	}
	return ls
}

// depthLimit is the strictest of the policy's, the stored and the
// [[client]] sections' limits.
func (d *decider) depthLimit() (int, string) {
	limit, src := d.ru.maxDepth, d.ru.depthSrc
	if d.st.hasDepth && d.st.maxDepth < limit {
		limit, src = d.st.maxDepth, storedSrc
	}
	for _, ac := range d.clients {
		if ac.cr.hasDepth && ac.cr.maxDepth < limit {
			limit, src = ac.cr.maxDepth, ac.cr.section
		}
	}
	return limit, src
}

func (d *decider) depth() int {
	n := 0
	for _, h := range d.hops {
		if h.fwd {
			n++
		}
	}
	if d.r.BindFailed && n == 0 {
		n = 1 // a failed bind is never local
	}
	return n
}

// pathText is "here → jump.example (forwarded) → db.internal"; a trailing
// "?" stands for a destination the client did not bind.
func (d *decider) pathText(unbound bool) string {
	var buf [4]PathHop
	p := Path{Hops: buf[:0]}
	hops := d.hops
	switch {
	case unbound && d.claimOnly():
		hops = hops[:len(hops)-1]
		p.Tail, p.BoundTo = TailNotHostbound, d.hops[len(d.hops)-1].label()
	case unbound:
		p.Tail = TailUnknown
	}
	for _, h := range hops {
		p.Hops = append(p.Hops, PathHop{Name: h.label(), Forwarded: h.fwd})
	}
	return p.Long()
}

func (d *decider) action(dest string) string {
	switch d.r.Purpose {
	case PurposeLogin:
		if d.r.User != "" {
			return "log in as " + d.r.User + " to " + dest
		}
		return "log in to " + dest
	case PurposeSSHSIG:
		return fmt.Sprintf("make an SSHSIG signature (ssh-keygen -Y sign, namespace %q)", d.r.Namespace)
	default:
		return "sign data that is neither a login nor an SSHSIG signature"
	}
}

// login decides a user authentication signature: the first finding of
// the login checks, in words.
func (d *decider) login() Decision {
	return d.explain(d.evaluateLogin())
}

// explain turns a finding into a Decision with its sentence for people.
func (d *decider) explain(f *finding) Decision {
	hops := d.hops
	depth := d.depth()
	last := len(hops) - 1
	bound := d.bound()
	destLabel := "an unknown host"
	if bound {
		destLabel = hops[last].label()
	}
	path := d.pathText(!bound)
	act := d.action(destLabel)

	switch f.kind {
	case FindNotClient:
		return refuse(f, d.clientsMiss(act))
	case FindClientUnknown:
		return refuse(f, d.clientUnknown(act, f.src))
	case FindNoBindRestricted:
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not %s: the client did not say which host this login is for (no session-bind), and %s limits the key to allow = %s. OpenSSH 8.9+ is needed for destination rules: use a newer ssh client, or remove allow from %s in %s.",
			d.keyName(), act, d.srcText(f.list.src), patternList(f.list.entries), sectionText(f.list.src), d.fileText()))
	case FindNoBindLocal:
		return d.finish(0, f.public(), f.rule, fmt.Sprintf("key %s may %s: a local connection (no session-bind), and %s has no allow list", d.keyName(), act, sectionText(d.ru.allowSrc)), nil)
	case FindBindFailed:
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not %s: a session-bind on this connection failed verification, so nothing says where this signature would be used, and %s restricts the key with allow. Check the hosts on this path (%s) for tampering.",
			d.keyName(), act, d.srcText(f.list.src), path))
	case FindBindOrder:
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not %s: the connection's session-binds are inconsistent (%s was bound for a login, yet more hosts follow it: %s). This is not something ssh does; the host that sent them may be tampering.",
			d.keyName(), act, hops[f.hop].label(), path))
	case FindRevoked:
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not %s (%s): %s. If the host has a new key, replace its line in known_hosts.",
			d.keyName(), act, path, hops[f.hop].revoked))
	case FindDenied:
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not %s (%s): %s matches deny entry %q in %s. To reach this host, remove that entry%s.",
			d.keyName(), act, path, hops[f.hop].label(), f.list.entries[f.entry].raw, d.srcText(f.list.src), d.inFile(f.list.src)))
	case FindTooDeep:
		what := fmt.Sprintf("through %d forwarded agents (at most %d allowed)", depth, f.limit)
		if f.limit == 0 {
			what = "through a forwarded agent at all"
		}
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not %s (%s) %s: max_forward_depth = %d in %s. If you trust every host on this path, raise max_forward_depth there%s.",
			d.keyName(), act, path, what, f.limit, d.srcText(f.src), d.inFile(f.src)))
	case FindNotAllowed:
		return refuse(f, d.allowMiss(*f.list, f.hop, act, path))
	case FindNoNextHop:
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not be used from %s (%s): no entry of allow = %s in %s continues from there.",
			d.keyName(), hops[f.hop].label(), path, patternList(f.list.entries), d.srcText(f.list.src)))
	case FindUnbound:
		if d.claimOnly() {
			return refuse(f, fmt.Sprintf(
				"Refused: key %s may not %s (%s): the login is a plain \"publickey\" signature, which does not name the server it is for, so whoever holds the forwarded agent on %s could use it to log in to any server that accepts the key; %s restricts the key with allow, so through a forwarded agent only host-bound logins (OpenSSH 8.9+ on both ends) are accepted. Log in to an older server directly, not through a forwarded agent.",
				d.keyName(), act, path, hops[d.lastForwarding()].label(), d.srcText(f.list.src)))
		}
		return refuse(f, fmt.Sprintf(
			"Refused: key %s may not %s (%s): the client on %s did not say which host it logs in to (no session-bind for the destination), and %s restricts the key with allow. The client there needs OpenSSH 8.9+.",
			d.keyName(), act, path, hops[f.hop].label(), d.srcText(f.list.src)))
	case FindUnknownDest:
		switch f.verdict {
		case Deny:
			return refuse(f, fmt.Sprintf(
				"Refused: key %s may not %s through a forwarded agent (%s): %s, and unknown_destination = \"deny\". Add the host to known_hosts, add its fingerprint to allow, or set unknown_destination = \"confirm\" in %s.",
				d.keyName(), act, path, f.why, d.fileText()))
		case Confirm:
			return d.finish(depth, Finding{}, "", "", &reason{f.public(), f.rule, f.why + ", and unknown_destination = \"confirm\""})
		default:
			return d.finish(depth, f.public(), f.rule, fmt.Sprintf("key %s may %s (%s): %s, and unknown_destination = \"allow\"", d.keyName(), act, path, f.why), nil)
		}
	}
	// FindAllowed.
	if d.destRule != "" {
		return d.finish(depth, f.public(), f.rule, "key "+d.keyName()+" may "+act+" ("+path+"): "+d.allowedBy(f.rule, d.allowEntry(f.rule)), nil)
	}
	limit, _ := d.depthLimit()
	how := fmt.Sprintf("%s has no allow list", sectionText(d.ru.allowSrc))
	if depth > 0 {
		how += fmt.Sprintf(" and the path is within max_forward_depth = %d", limit)
	}
	return d.finish(depth, f.public(), f.rule, fmt.Sprintf("key %s may %s (%s): %s", d.keyName(), act, path, how), nil)
}

// lastForwarding is the index of the last forwarding hop (-1: none).
func (d *decider) lastForwarding() int {
	for i := len(d.hops) - 1; i >= 0; i-- {
		if d.hops[i].fwd {
			return i
		}
	}
	return -1
}

func (d *decider) destNote(bound bool) string {
	if bound {
		return d.hops[len(d.hops)-1].note
	}
	return ""
}

func (d *decider) inFile(src string) string {
	if src == storedSrc {
		return " (remove the key and add it again with new settings)"
	}
	return " in " + d.fileText()
}

func (d *decider) allowEntry(rule string) string {
	if d.destList != nil && rule == d.destRule {
		return d.destList.entries[d.destEntry].raw
	}
	for _, l := range d.allows {
		for j, pat := range l.entries {
			if l.rule(j) == rule {
				return pat.raw
			}
		}
	}
	return ""
}

func (d *decider) allowedBy(rule, entry string) string {
	src, _, _ := strings.Cut(rule, " allow[")
	return "allow entry " + strconv.Quote(entry) + " in " + d.srcText(src)
}

// allowMiss explains why hop i matched no entry of l and suggests the entry
// that would allow it.
func (d *decider) allowMiss(l list, i int, act, path string) string {
	h := &d.hops[i]
	name := ""
	switch {
	case len(h.names) > 0:
		name = h.names[0]
	case len(h.wild) > 0:
		name = h.wild[0].pat
	case len(h.fingerprints()) > 0:
		name = h.fps[0]
	}
	suggest := ""
	if name != "" {
		s := name
		if i > 0 {
			prev := &d.hops[i-1]
			pn := prev.label()
			if len(prev.names) > 0 {
				pn = prev.names[0]
			} else if len(prev.fingerprints()) > 0 && len(prev.wild) == 0 {
				pn = prev.fps[0]
			}
			s = pn + ">" + s
		}
		suggest = fmt.Sprintf(" To permit it, add %q to that allow list", s)
		if l.src == storedSrc {
			suggest += " (remove the key and add it again with --allow)."
		} else {
			suggest += " in " + d.fileText() + "."
		}
	}
	where := "the destination"
	if i < len(d.hops)-1 || d.hops[i].fwd {
		where = "a host on the way"
	}
	extra := ""
	if !h.named() {
		extra = " known_hosts has no name for it, so only a fingerprint entry can match it."
		if h.note != "" {
			extra = " known_hosts has no name for it (" + h.note + "), so only a fingerprint entry can match it."
		}
	}
	return fmt.Sprintf("Refused: key %s may not %s (%s): %s, %s, is not allowed by %s (allow = %s).%s%s",
		d.keyName(), act, path, where, h.label(), d.srcText(l.src), patternList(l.entries), extra, suggest)
}

func patternList(ps []destPattern) string {
	q := make([]string, len(ps))
	for i, p := range ps {
		q[i] = fmt.Sprintf("%q", p.raw)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// reason is one cause for asking.
type reason struct {
	f          Finding
	rule, text string
}

// finish applies the confirm settings to a request that is otherwise
// allowed by rule (found: done); why completes "Allowed: …". first, if
// set, is a cause to ask that comes before the confirm settings.
func (d *decider) finish(depth int, done Finding, rule, why string, first *reason) Decision {
	var asks []reason
	if first != nil {
		asks = append(asks, *first)
	}
	switch {
	case d.ru.confirm == confirmAlways:
		asks = append(asks, reason{found(FindConfirmAlways, d.ru.confirmSrc, ""), d.ru.confirmSrc + " confirm", fmt.Sprintf("confirm = \"always\" in %s", sectionText(d.ru.confirmSrc))})
	case d.ru.confirm == confirmForwarded && depth >= 1:
		asks = append(asks, reason{found(FindConfirmForwarded, d.ru.confirmSrc, ""), d.ru.confirmSrc + " confirm", fmt.Sprintf("confirm = \"forwarded\" in %s asks for every use through a forwarded agent", sectionText(d.ru.confirmSrc))})
	}
	if d.st.confirm {
		asks = append(asks, reason{found(FindConfirmKey, storedSrc, ""), storedSrc + " confirm", "the key was added with ssh-add -c or safe-agent add --confirm"})
	}
	asks = append(asks, d.clientAsks(depth)...)
	if len(asks) == 0 {
		return Decision{Verdict: Allow, Finding: done, Rule: rule, Reason: "Allowed: " + why + d.clientsOK() + "."}
	}
	remember := d.ru.remember
	for _, ac := range d.clients {
		if ac.cr.hasRemember && ac.cr.remember < remember {
			remember = ac.cr.remember
		}
	}
	if d.st.confirm {
		remember = 0 // ssh-add -c: every use is asked
	}
	n := len(d.hops)
	unbound := !d.bound()
	dest := "an unknown host"
	if !unbound {
		dest = d.hops[n-1].label()
	}
	pathPart := ""
	if n > 0 || d.r.BindFailed {
		pathPart = " (" + d.pathText(unbound && d.r.Purpose == PurposeLogin) + ")"
	}
	texts := make([]string, len(asks))
	for i, a := range asks {
		texts[i] = a.text
	}
	ask := fmt.Sprintf("Ask first: key %s would %s%s: %s", d.keyName(), d.action(dest), pathPart, strings.Join(texts, "; also "))
	return Decision{Verdict: Confirm, Finding: asks[0].f, Rule: asks[0].rule, Remember: remember, Reason: ask + ".", ask: ask}
}

// localOnly decides SSHSIG and opaque signatures: only on the user's own
// machine.
func (d *decider) localOnly() Decision {
	act := d.action("")
	if f := d.checkClients(); f != nil {
		return d.explain(f)
	}
	if len(d.hops) > 0 || d.r.BindFailed {
		var why string
		if d.r.BindFailed {
			why = "a session-bind on this connection failed verification, so it is not treated as local"
		} else {
			why = "this request came through an ssh connection (" + d.pathText(false) + ")"
		}
		return deny(found(FindNotLocal, "", ""), "local only (built-in)", fmt.Sprintf(
			"Refused: key %s may %s only on your own machine: %s. Run the signing command on your own machine instead.",
			d.keyName(), act, why))
	}
	if d.r.Purpose == PurposeSSHSIG {
		if bad := d.clientNamespaces(act); bad != nil {
			return *bad
		}
	}
	if d.r.Purpose == PurposeSSHSIG && d.ru.namespaces != nil {
		i := slices.Index(d.ru.namespaces, d.r.Namespace)
		if i < 0 {
			return deny(found(FindNamespace, d.ru.nsSrc, "namespaces"), d.ru.nsSrc+" namespaces", fmt.Sprintf(
				"Refused: key %s may not %s: namespaces in %s are %s. Add %q to namespaces in %s to allow it.",
				d.keyName(), act, sectionText(d.ru.nsSrc), nsList(d.ru.namespaces), d.r.Namespace, d.fileText()))
		}
		listed := found(FindAllowed, d.ru.nsSrc, "namespaces")
		listed.Entry = i
		return d.finish(0, listed, fmt.Sprintf("%s namespaces[%d]", d.ru.nsSrc, i), fmt.Sprintf("key %s may %s on your own machine: namespace %q is listed in %s", d.keyName(), act, d.r.Namespace, sectionText(d.ru.nsSrc)), nil)
	}
	what := "any namespace"
	if d.r.Purpose == PurposeOpaque {
		what = "other signatures"
	}
	return d.finish(0, found(FindAllowed, d.ru.section, ""), d.ru.section, fmt.Sprintf("key %s may %s on your own machine (%s allows %s)", d.keyName(), act, sectionText(d.ru.section), what), nil)
}

func nsList(ns []string) string {
	if len(ns) == 0 {
		return "empty (no namespace)"
	}
	return quoteList(ns)
}

// matchAt reports whether pattern pat matches the path at hop i: its last
// part hop i, the part before it hop i-1, and so on.
func matchAt(hops []hop, i int, pat destPattern, forDeny bool) bool {
	n := len(pat.parts)
	start := i - (n - 1)
	if start < 0 {
		return false
	}
	for k, part := range pat.parts {
		if !hops[start+k].matchPart(part, forDeny) {
			return false
		}
	}
	return true
}

// matchPart matches one host element against a hop. For deny, a wildcard
// known_hosts name matches when it could be the denied host; for allow,
// only when the entry covers it entirely.
func (h *hop) matchPart(hp hostPart, forDeny bool) bool {
	switch hp.kind {
	case partFingerprint:
		return slices.Contains(h.fingerprints(), hp.s)
	case partLiteral:
		if slices.Contains(h.names, hp.s) {
			return true
		}
		if forDeny {
			for _, w := range h.wild {
				if globMatch(w.pat, hp.s) && !negatedBy(w.negs, hp.s) {
					return true
				}
			}
		}
	case partGlob:
		for _, n := range h.names {
			if globMatch(hp.s, n) {
				return true
			}
		}
		for _, w := range h.wild {
			if forDeny && globOverlap(hp.s, w.pat) || !forDeny && globSubsumes(hp.s, w.pat) {
				return true
			}
		}
	}
	return false
}

func negatedBy(negs []string, s string) bool {
	for _, n := range negs {
		if globMatch(n, s) {
			return true
		}
	}
	return false
}

// Visible reports whether a key should be listed on a connection with
// r's hops (r.Key, r.Settings, r.Hops, r.BindFailed and r.Now are used).
// A connection with no forwarding hop and no failed bind sees every key.
// Otherwise the login checks Decide uses decide: a path whose last hop is a
// destination (ssh there bound its login first, as OpenSSH 8.9+ does) is
// judged exactly as a login to it would be; a path whose last hop forwards
// (the list comes from a shell on that host) needs some allow entry that
// can take the next step from it. When the key is hidden, the Decision
// says by which rule and why.
func (p *Policy) Visible(r Request) (bool, Decision) {
	if !slices.ContainsFunc(r.Hops, func(h Hop) bool { return h.Forwarded }) && !r.BindFailed {
		return true, Decision{}
	}
	r.Purpose, r.NotHostbound, r.User = PurposeLogin, false, ""
	d, bad := p.newDecider(&r)
	if bad != nil {
		return false, *bad
	}
	defer p.release(d)
	d.listing = true
	f := d.evaluateLogin()
	if !f.refuses() {
		return true, Decision{}
	}
	if r.Key.Cert == nil && p.certAllows(&r) {
		return true, Decision{}
	}
	return false, d.explain(f)
}

// certAllows: a plain key may be used with a certificate kept as a file
// (ssh's CertificateFile), which a list request does not show. It stays
// listed where some certificate section (match "ca:…"/"principal:…") would
// let the path use it; the sign request is then decided with the
// certificate the login names, after its CA signature is checked.
func (p *Policy) certAllows(r *Request) bool {
	for _, ru := range p.rules {
		if !ru.kind.certBased() {
			continue
		}
		d, bad := p.newDecider(r)
		if bad != nil {
			return false
		}
		d.ru, d.listing = ru, true
		d.allows, d.denies = d.allowLists(), d.denyLists()
		ok := !d.evaluateLogin().refuses()
		p.release(d)
		if ok {
			return true
		}
	}
	return false
}

// HasAllowList reports whether a key's use is limited to allow-listed
// destinations, by the policy file or by its own settings.
func (p *Policy) HasAllowList(k Key, s Settings) bool {
	return len(p.ruleFor(k).allow) > 0 || len(s.Allow) > 0
}
