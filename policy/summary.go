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
	var depth string
	switch r.maxDepth {
	case 0:
		depth = "directly only, never through a forwarded agent"
	case 1:
		depth = "through at most 1 forwarded agent"
	default:
		depth = fmt.Sprintf("through at most %d forwarded agents", r.maxDepth)
	}
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
