package policy

// The login rules, as one ordered list of small checks. Decide runs them
// for a sign request and turns the first finding into a sentence; Visible
// runs the same checks for a list request on a forwarded connection and
// only asks whether the finding refuses. There is no second copy of the
// rules.

// finding is the outcome of one check: a refusal, or an outcome that ends
// the evaluation (an allow, or unknown_destination's verdict).
type finding struct {
	kind    FindingKind
	verdict Verdict
	rule    string // what Decision.Rule will say
	list    *list  // the allow or deny list involved, if any
	entry   int    // index into list.entries; -1 if none
	hop     int    // index into the hops; -1 if none
	limit   int    // FindTooDeep: the max_forward_depth in force
	src     string // the section, when no list says it (FindTooDeep: where that limit is set)
	why     string // FindUnknownDest: why the destination has no name
}

func (f *finding) refuses() bool { return f.verdict == Deny }

// public is the finding as Decision.Finding carries it.
func (f *finding) public() Finding {
	p := Finding{Kind: f.kind, Source: f.src, Entry: f.entry, Hop: f.hop}
	switch {
	case f.list != nil:
		p.Source, p.List = f.list.src, f.list.field
	case f.kind == FindNotClient:
		p.List = "clients"
	}
	return p
}

// refuse is the Decision for a refusing finding, with its sentence.
func refuse(f *finding, text string) Decision {
	return Decision{Verdict: Deny, Finding: f.public(), Rule: f.rule, Reason: text}
}

func refusal(kind FindingKind, rule string) *finding {
	return &finding{kind: kind, verdict: Deny, rule: rule, entry: -1, hop: -1}
}

// evaluateLogin runs the login checks in order; the first finding decides.
func (d *decider) evaluateLogin() *finding {
	// Method expressions, not method values: nothing to allocate.
	checks := [...]func(*decider) *finding{
		(*decider).checkClients,
		(*decider).checkNoBind,
		(*decider).checkBindFailed,
		(*decider).checkBindOrder,
		(*decider).checkRevoked,
		(*decider).checkDeny,
		(*decider).checkDepth,
		(*decider).checkAllow,
		(*decider).checkUnknownDest,
	}
	for _, check := range checks {
		if f := check(d); f != nil {
			return f
		}
	}
	return d.allowed()
}

// bound reports whether the login's destination is known: the last hop,
// bound for a login (is_forwarding = 0), every bind verified, and, through
// a forwarded agent, a host-bound login (the agent has checked that its
// host key is the last bind's). A plain "publickey" login through a
// forwarded agent names no server: the last bind then proves nothing.
func (d *decider) bound() bool {
	last := len(d.hops) - 1
	if last < 0 || d.hops[last].fwd || d.r.BindFailed {
		return false
	}
	return !d.claimOnly()
}

// claimOnly: a plain "publickey" login through a forwarded agent whose last
// bind is for a login; that bind is only a claim of where it goes.
func (d *decider) claimOnly() bool {
	last := len(d.hops) - 1
	return d.r.NotHostbound && last >= 0 && !d.hops[last].fwd && !d.r.BindFailed && d.depth() >= 1
}

// openEnded: a list request whose destination is a host still to come
// (the last hop forwards, or nothing was bound).
func (d *decider) openEnded() bool {
	return d.listing && (len(d.hops) == 0 || d.hops[len(d.hops)-1].fwd)
}

func (d *decider) checkNoBind() *finding {
	if len(d.hops) > 0 || d.r.BindFailed {
		return nil
	}
	if len(d.allows) > 0 {
		f := refusal(FindNoBindRestricted, d.allows[0].src+" allow")
		f.list = &d.allows[0]
		return f
	}
	return &finding{kind: FindNoBindLocal, verdict: Allow, rule: d.ru.section, src: d.ru.allowSrc, entry: -1, hop: -1}
}

func (d *decider) checkBindFailed() *finding {
	if !d.r.BindFailed || len(d.allows) == 0 {
		return nil
	}
	f := refusal(FindBindFailed, d.allows[0].src+" allow")
	f.list = &d.allows[0]
	return f
}

func (d *decider) checkBindOrder() *finding {
	for i := 0; i < len(d.hops)-1; i++ {
		if !d.hops[i].fwd {
			f := refusal(FindBindOrder, "session-bind")
			f.hop = i
			return f
		}
	}
	return nil
}

func (d *decider) checkRevoked() *finding {
	for i, h := range d.hops {
		if h.revoked != "" {
			f := refusal(FindRevoked, "known_hosts @revoked")
			f.hop = i
			return f
		}
	}
	return nil
}

func (d *decider) checkDeny() *finding {
	for li := range d.denies {
		l := &d.denies[li]
		for i := range d.hops {
			for j, pat := range l.entries {
				if matchAt(d.hops, i, pat, true) {
					f := refusal(FindDenied, l.rule(j))
					f.list, f.entry, f.hop = l, j, i
					return f
				}
			}
		}
	}
	return nil
}

func (d *decider) checkDepth() *finding {
	limit, src := d.depthLimit()
	if d.depth() <= limit {
		return nil
	}
	f := refusal(FindTooDeep, src+" max_forward_depth")
	f.limit, f.src = limit, src
	return f
}

// checkAllow: every hop must be allowed by every non-empty allow list, and
// such a key only logs in to a bound destination. For a list on a
// forwarded connection whose destination is still to come, some entry must
// be able to take the next step instead.
func (d *decider) checkAllow() *finding {
	last := len(d.hops) - 1
	for li := range d.allows {
		l := &d.allows[li]
		for i := range d.hops {
			j := firstMatch(d.hops, i, l.entries)
			if j < 0 {
				f := refusal(FindNotAllowed, l.src+" allow")
				f.list, f.hop = l, i
				return f
			}
			if i == last && d.destRule == "" {
				d.destRule, d.destList, d.destEntry = l.rule(j), l, j
			}
		}
		if d.openEnded() {
			if !d.canContinue(l) {
				f := refusal(FindNoNextHop, l.src+" allow")
				f.list, f.hop = l, last
				return f
			}
			continue
		}
		if !d.bound() {
			f := refusal(FindUnbound, l.src+" allow")
			f.list, f.hop = l, last
			return f
		}
	}
	return nil
}

func firstMatch(hops []hop, i int, entries []destPattern) int {
	for k, pat := range entries {
		if matchAt(hops, i, pat, false) {
			return k
		}
	}
	return -1
}

// canContinue: some entry's leading parts match the path's tail (a
// one-part entry matches any next host).
func (d *decider) canContinue(l *list) bool {
	last := len(d.hops) - 1
	for _, pat := range l.entries {
		prefix := destPattern{raw: pat.raw, parts: pat.parts[:len(pat.parts)-1]}
		if len(prefix.parts) == 0 || last >= 0 && matchAt(d.hops, last, prefix, false) {
			return true
		}
	}
	return false
}

// checkUnknownDest: through a forwarded agent, a key without an allow list
// logging in to a host nobody can name is unknown_destination's to decide.
func (d *decider) checkUnknownDest() *finding {
	if len(d.allows) > 0 || d.depth() < 1 {
		return nil
	}
	if d.openEnded() && !d.r.BindFailed {
		return nil // a list: the next host may well have a name
	}
	bound := d.bound()
	if bound && d.hops[len(d.hops)-1].named() {
		return nil
	}
	why := "known_hosts has no name for it"
	switch {
	case d.r.BindFailed:
		why = "a session-bind on this connection failed verification"
	case d.claimOnly():
		why = `the login is not host-bound (a plain "publickey" signature does not name the server, so it would work on any server that accepts the key)`
	case !bound:
		why = "the client did not say which host it logs in to"
	}
	if note := d.destNote(bound); note != "" {
		why += " (" + note + ")"
	}
	return &finding{kind: FindUnknownDest, verdict: d.p.unknownDest, rule: "unknown_destination", entry: -1, hop: -1, why: why}
}

func (d *decider) allowed() *finding {
	if d.destRule != "" {
		d.fin = finding{kind: FindAllowed, verdict: Allow, rule: d.destRule, list: d.destList, entry: d.destEntry, hop: len(d.hops) - 1}
	} else {
		d.fin = finding{kind: FindAllowed, verdict: Allow, rule: d.ru.section, src: d.ru.section, entry: -1, hop: -1}
	}
	return &d.fin
}
