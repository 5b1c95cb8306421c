package policy

import (
	"fmt"
	"strings"
)

// Summary says in plain words what each key may do (for `policy check`).
func (p *Policy) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy: %s\n", p.name)
	ix := p.index
	if len(p.knownHosts) == 0 {
		b.WriteString("known_hosts: none, so no host has a name\n")
	} else {
		fmt.Fprintf(&b, "known_hosts: %s (host keys: %d; hashed entries: %d; @cert-authority lines: %d; @revoked lines: %d)\n",
			strings.Join(p.knownHosts, ", "), ix.count(), ix.hashedLines, ix.caLines, ix.revokedLines)
	}
	switch p.unknownDest {
	case Allow:
		b.WriteString("unknown_destination = \"allow\": a forwarded login to a host known_hosts cannot name is allowed (if the key's rules allow it)\n")
	case Confirm:
		b.WriteString("unknown_destination = \"confirm\": a forwarded login to a host known_hosts cannot name is asked first\n")
	default:
		b.WriteString("unknown_destination = \"deny\": a forwarded login to a host known_hosts cannot name is refused\n")
	}
	prompt := p.prompt
	if prompt == "" {
		prompt = "(default)"
	}
	fmt.Fprintf(&b, "prompt: %s; confirm_timeout = %s; notify = %q\n", prompt, p.confirmTimeout, p.notify)
	b.WriteString("\n[defaults], for every key no [[key]] matches:\n")
	p.describe(&b, p.defaults)
	for _, r := range p.rules {
		switch r.kind {
		case matchFingerprint:
			fmt.Fprintf(&b, "\n[[key]] match %q, the key with that fingerprint (and its certificates):\n", r.match)
		case matchCA:
			fmt.Fprintf(&b, "\n[[key]] match %q, user certificates signed by the CA key %s:\n", r.match, r.value)
		case matchPrincipal:
			fmt.Fprintf(&b, "\n[[key]] match %q, user certificates with a principal matching %q:\n", r.match, r.value)
		default:
			fmt.Fprintf(&b, "\n[[key]] match %q, keys whose comment matches it:\n", r.match)
		}
		p.describe(&b, r)
	}
	for _, cr := range p.clientRules {
		describeClientRule(&b, cr)
	}
	b.WriteString("\nEverywhere: SSHSIG (ssh-keygen -Y sign) and other non-login signatures only on this machine, never through an ssh connection.\n")
	return b.String()
}

func (p *Policy) describe(b *strings.Builder, r *rule) {
	from := func(src string) string {
		if src != r.section {
			return " (from " + sectionText(src) + ")"
		}
		return ""
	}
	hosts := "any host"
	if len(r.allow) > 0 {
		parts := make([]string, len(r.allow))
		for i, a := range r.allow {
			parts[i] = describePattern(a)
		}
		hosts = strings.Join(parts, "; ")
	}
	depth := depthText(r.maxDepth)
	fmt.Fprintf(b, "  log in to:   %s%s\n", hosts, from(r.allowSrc))
	fmt.Fprintf(b, "  forwarding:  %s%s\n", depth, from(r.depthSrc))
	if len(r.deny) > 0 {
		parts := make([]string, len(r.deny))
		for i, a := range r.deny {
			parts[i] = describePattern(a)
		}
		fmt.Fprintf(b, "  never:       %s%s\n", strings.Join(parts, "; "), from(r.denySrc))
	}
	var confirm string
	switch r.confirm {
	case confirmAlways:
		confirm = "ask before every use"
	case confirmForwarded:
		confirm = "ask before every use through a forwarded agent"
	default:
		confirm = "never ask (unless the key was added with ssh-add -c)"
	}
	if r.confirm != confirmNever {
		if r.remember > 0 {
			confirm += fmt.Sprintf("; a yes is remembered for %s", r.remember)
		} else {
			confirm += "; a yes is not remembered"
		}
	}
	fmt.Fprintf(b, "  confirm:     %s%s\n", confirm, from(r.confirmSrc))
	ns := "any namespace"
	if r.namespaces != nil {
		ns = "namespaces " + nsList(r.namespaces)
	}
	if r.namespaces != nil && len(r.namespaces) == 0 {
		fmt.Fprintf(b, "  SSHSIG:      never (namespaces is empty)%s\n", from(r.nsSrc))
	} else {
		fmt.Fprintf(b, "  SSHSIG:      %s, on this machine%s\n", ns, from(r.nsSrc))
	}
	if r.clients != nil {
		fmt.Fprintf(b, "  programs:    only when %s%s\n", describeClients(r.clients), from(r.clientsSrc))
	}
}

// describeClients says in words when client patterns match: "git or ssh
// is the requesting process or one of its parents".
func describeClients(ps []clientPattern) string {
	var procs, other []string
	for _, p := range ps {
		switch p.kind {
		case clientName:
			procs = append(procs, p.glob)
		case clientPath:
			procs = append(procs, "the program "+p.glob)
		case clientUnit:
			other = append(other, "the request comes from systemd unit "+p.glob)
		case clientCgroup:
			other = append(other, "the request comes from cgroup "+p.glob)
		case clientContainer:
			if p.glob == "*" {
				other = append(other, "the request comes from inside a container")
			} else {
				other = append(other, "the request comes from inside a "+p.glob+" container")
			}
		}
	}
	if len(procs) > 0 {
		other = append([]string{strings.Join(procs, " or ") + " is the requesting process or one of its parents"}, other...)
	}
	return strings.Join(other, ", or ")
}

func describeClientRule(b *strings.Builder, cr *clientRule) {
	keys := "every key"
	if len(cr.keys) > 0 {
		m := make([]string, len(cr.keys))
		for i, r := range cr.keys {
			m[i] = fmt.Sprintf("%q", r.match)
		}
		keys = "keys matching " + strings.Join(m, " or ")
	}
	fmt.Fprintf(b, "\n%s, for %s, when %s (adds to the key's own rules, never loosens them):\n", sectionText(cr.section), keys, describeClients(cr.match))
	if len(cr.allow) > 0 {
		parts := make([]string, len(cr.allow))
		for i, a := range cr.allow {
			parts[i] = describePattern(a)
		}
		fmt.Fprintf(b, "  log in to:   only %s\n", strings.Join(parts, "; "))
	}
	if len(cr.deny) > 0 {
		parts := make([]string, len(cr.deny))
		for i, a := range cr.deny {
			parts[i] = describePattern(a)
		}
		fmt.Fprintf(b, "  never:       %s\n", strings.Join(parts, "; "))
	}
	if cr.hasDepth {
		fmt.Fprintf(b, "  forwarding:  %s\n", depthText(cr.maxDepth))
	}
	if cr.hasConfirm && cr.confirm != confirmNever {
		c := "ask before every use"
		if cr.confirm == confirmForwarded {
			c = "ask before every use through a forwarded agent"
		}
		if cr.hasRemember {
			c += fmt.Sprintf("; a yes is remembered for at most %s", cr.remember)
		}
		fmt.Fprintf(b, "  confirm:     %s\n", c)
	} else if cr.hasRemember {
		fmt.Fprintf(b, "  confirm:     a yes is remembered for at most %s\n", cr.remember)
	}
	if cr.namespaces != nil {
		if len(cr.namespaces) == 0 {
			b.WriteString("  SSHSIG:      never (namespaces is empty)\n")
		} else {
			fmt.Fprintf(b, "  SSHSIG:      only namespaces %s\n", nsList(cr.namespaces))
		}
	}
}

func depthText(n int) string {
	switch n {
	case 0:
		return "directly only, never through a forwarded agent"
	case 1:
		return "through at most 1 forwarded agent"
	}
	return fmt.Sprintf("through at most %d forwarded agents", n)
}

func describePattern(d destPattern) string {
	name := func(h hostPart) string {
		if h.kind == partFingerprint {
			return "the host with key " + h.s
		}
		return h.s
	}
	last := d.parts[len(d.parts)-1]
	if len(d.parts) == 1 {
		return name(last)
	}
	via := make([]string, len(d.parts)-1)
	for i, h := range d.parts[:len(d.parts)-1] {
		via[i] = name(h)
	}
	return fmt.Sprintf("%s only right after %s", name(last), strings.Join(via, " then "))
}
