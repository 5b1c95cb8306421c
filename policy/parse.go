package policy

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// FileError is one problem in a policy file, at a line and byte column.
type FileError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *FileError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// FileErrors are all problems found in a policy file, in file order. Its
// Error prints one FILE:LINE:COL: message per line.
type FileErrors []*FileError

func (es FileErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// maxErrors bounds how many problems one Parse reports.
const maxErrors = 20

var (
	topFields     = []string{"known_hosts", "unknown_destination", "prompt", "confirm_timeout", "notify", "refusal_memory", "audit_mirror", "upstream", "upstream_timeout", "defaults", "key", "client"}
	ruleFields    = []string{"allow", "deny", "max_forward_depth", "confirm", "remember", "namespaces"}
	defaultFields = append(slices.Clone(ruleFields), "clients")
	keyFields     = append(append([]string{"match"}, ruleFields...), "clients")
	clientFields  = append([]string{"name", "match", "keys"}, ruleFields...)
)

// checker walks the decoded TOML and collects errors with positions.
type checker struct {
	file string
	loc  *locator
	errs []*FileError

	kept     map[string]string        // see keep
	compiled map[string]destPattern   // allow/deny entries compiled so far
	lists    map[string][]destPattern // allow/deny lists so far, by their entries
}

// keep returns a copy of s, one per distinct string. Strings the policy
// keeps are copied out of the TOML text, so the text can be freed, and
// repeated ones (the same host in many rules) are stored once.
func (c *checker) keep(s string) string {
	if k, ok := c.kept[s]; ok {
		return k
	}
	if c.kept == nil {
		c.kept = map[string]string{}
	}
	k := strings.Clone(s)
	c.kept[k] = k
	return k
}

func (c *checker) errAt(pos position, format string, args ...any) {
	c.errs = append(c.errs, &FileError{File: c.file, Line: pos.line, Col: pos.col, Msg: fmt.Sprintf(format, args...)})
}

// bad reports a problem with the value at path.
func (c *checker) bad(path string, format string, args ...any) {
	c.errAt(c.loc.value(path), format, args...)
}

// Parse builds a policy from the TOML text data; name is used in error
// messages (normally the file's path). readFile reads the known_hosts files
// the policy names; nil reads none. Relative known_hosts paths are relative
// to name's directory; "~/" is the user's home.
func Parse(name string, data []byte, readFile func(string) ([]byte, error)) (*Policy, error) {
	src := string(data)
	var raw map[string]any
	if _, err := toml.Decode(src, &raw); err != nil {
		return nil, FileErrors{tomlError(name, src, err)}
	}
	c := &checker{file: name, loc: newLocator(src)}
	p := c.policy(raw)
	if len(c.errs) > 0 {
		slices.SortStableFunc(c.errs, func(a, b *FileError) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
		})
		if len(c.errs) > maxErrors {
			c.errs = c.errs[:maxErrors]
		}
		return nil, FileErrors(c.errs)
	}
	p.name = name
	p.buildRuleIndex()
	p.lintRules(c.loc)
	if err := p.readKnownHosts(c, readFile); err != nil {
		return nil, err
	}
	return p, nil
}

func tomlError(name, src string, err error) *FileError {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line, col := pe.Position.Line, pe.Position.Col
		// The toml package counts a newline that ends a line as the next
		// line; the byte offset is exact.
		if s := pe.Position.Start; s >= 0 && s <= len(src) && (s > 0 || line <= 1) {
			p := (&locator{src: src}).pos(s)
			line, col = p.line, p.col
		}
		if line < 1 {
			line = 1
		}
		if col < 1 {
			col = 1
		}
		return &FileError{File: name, Line: line, Col: col, Msg: "invalid TOML: " + pe.Message}
	}
	return &FileError{File: name, Line: 1, Col: 1, Msg: "invalid TOML: " + err.Error()}
}

func (c *checker) policy(raw map[string]any) *Policy {
	p := Default()
	p.knownHosts = []string{"~/.ssh/known_hosts"}
	c.unknownFields(raw, "", topFields, "the top level")
	if v, ok := raw["known_hosts"]; ok {
		p.knownHosts = c.stringList("known_hosts", v, func(path, s string) bool {
			if strings.TrimSpace(s) == "" {
				c.bad(path, "known_hosts has an empty file name")
				return false
			}
			return true
		})
	}
	if v, ok := raw["unknown_destination"]; ok {
		switch s := c.enum("unknown_destination", v, "allow", "confirm", "deny"); s {
		case "allow":
			p.unknownDest = Allow
		case "deny":
			p.unknownDest = Deny
		}
	}
	if v, ok := raw["prompt"]; ok {
		if s, ok := c.str("prompt", v); ok {
			if strings.TrimSpace(s) == "" {
				c.bad("prompt", "prompt is empty: remove the line to use the default")
			}
			p.prompt = c.keep(s)
		}
	}
	if v, ok := raw["confirm_timeout"]; ok {
		if d, ok := c.duration("confirm_timeout", v); ok {
			if d <= 0 {
				c.bad("confirm_timeout", "confirm_timeout must be longer than 0s, like \"30s\"")
			}
			p.confirmTimeout = d
		}
	}
	if v, ok := raw["refusal_memory"]; ok {
		if d, ok := c.duration("refusal_memory", v); ok {
			if d < 0 || d > MaxRefusalMemory {
				c.bad("refusal_memory", "refusal_memory must be between \"0s\" (off) and \"10m\", like \"10s\"")
			}
			p.refusalMemory = d
		}
	}
	if v, ok := raw["notify"]; ok {
		if s := c.enum("notify", v, "never", "denied", "forwarded", "always"); s != "" {
			p.notify = Notify(s)
		}
	}
	if v, ok := raw["audit_mirror"]; ok {
		if s := c.enum("audit_mirror", v, "none", "journal", "syslog"); s != "" {
			p.auditMirror = s
		}
	}
	c.upstreamFields(raw, p)
	if v, ok := raw["defaults"]; ok {
		if t, ok := v.(map[string]any); ok {
			c.unknownFields(t, "defaults", defaultFields, "[defaults]")
			c.ruleFields(t, "defaults", p.defaults)
		} else {
			c.bad("defaults", "defaults must be a table: write [defaults] on a line of its own")
		}
	}
	for i, t := range c.tables(raw, "key") {
		path := fmt.Sprintf("key[%d]", i)
		c.unknownFields(t, path, keyFields, "[[key]]")
		p.rules = append(p.rules, c.keyRule(t, path, p.defaults))
	}
	for i, t := range c.tables(raw, "client") {
		path := fmt.Sprintf("client[%d]", i)
		c.unknownFields(t, path, clientFields, "[[client]]")
		p.clientRules = append(p.clientRules, c.clientRule(t, path))
	}
	return p
}

// tables reads raw[name] as a list of [[name]] sections.
func (c *checker) tables(raw map[string]any, name string) []map[string]any {
	v, ok := raw[name]
	if !ok {
		return nil
	}
	var tables []map[string]any
	switch v := v.(type) {
	case []map[string]any:
		tables = v
	case []any:
		for i, e := range v {
			t, ok := e.(map[string]any)
			if !ok {
				c.bad(fmt.Sprintf("%s[%d]", name, i), "each %s entry must be a table: write [[%s]] sections", name, name)
				continue
			}
			tables = append(tables, t)
		}
	default:
		c.bad(name, "%s must be a list of tables: write each as a [[%s]] section", name, name)
	}
	return tables
}

func (c *checker) keyRule(t map[string]any, path string, d *rule) *rule {
	r := *d // fields the section omits come from [defaults]
	mv, ok := t["match"]
	if !ok {
		c.errAt(c.loc.key(path), "[[key]] needs match = \"SHA256:…\" (a key fingerprint), a comment glob like \"work-*\", \"ca:SHA256:…\" or \"principal:NAME\"")
	} else if m, ok := c.str(path+".match", mv); ok {
		c.keyMatch(path+".match", m, &r)
	}
	r.section = fmt.Sprintf("key %q", r.match)
	c.ruleFields(t, path, &r)
	return &r
}

// keyMatch reads a key match ([[key]] match, [[client]] keys) into r's
// match, kind and value.
func (c *checker) keyMatch(path, m string, r *rule) {
	field := lastField(path)
	switch {
	case strings.HasPrefix(m, "SHA256:"):
		if err := checkFingerprint(m); err != nil {
			c.bad(path, "%s: %v", field, err)
		}
		r.kind = matchFingerprint
	case strings.HasPrefix(m, "ca:"):
		r.kind, r.value = matchCA, strings.TrimPrefix(m, "ca:")
		if err := checkFingerprint(r.value); err != nil {
			c.bad(path, "%s %q: after ca: write the CA key's fingerprint (ssh-keygen -lf CA.pub): %v", field, m, err)
		}
	case strings.HasPrefix(m, "principal:"):
		r.kind, r.value = matchPrincipal, strings.TrimPrefix(m, "principal:")
		if r.value == "" {
			c.bad(path, "%s %q names no principal: write it like \"principal:alice\" (globs allowed)", field, m)
		}
	case m == "":
		c.bad(path, "%s is empty: write a fingerprint \"SHA256:…\", a comment glob like \"work-*\", \"ca:SHA256:…\" or \"principal:NAME\"", field)
	}
	r.match = c.keep(m)
}

// ruleFields reads the fields shared by [defaults] and [[key]] into r.
func (c *checker) ruleFields(t map[string]any, path string, r *rule) {
	f := func(k string) string { return joinPath(path, k) }
	if v, ok := t["allow"]; ok {
		r.allow, r.allowSrc = c.patterns(f("allow"), v), r.section
	}
	if v, ok := t["deny"]; ok {
		r.deny, r.denySrc = c.patterns(f("deny"), v), r.section
	}
	if v, ok := t["max_forward_depth"]; ok {
		n, isInt := v.(int64)
		switch {
		case !isInt:
			c.bad(f("max_forward_depth"), "max_forward_depth must be a whole number from 0 to %d, like max_forward_depth = 1", maxChain)
		case n < 0 || n > maxChain:
			c.bad(f("max_forward_depth"), "max_forward_depth = %d is out of range: use 0 (never through a forwarded agent) to %d", n, maxChain)
		default:
			r.maxDepth, r.depthSrc = int(n), r.section
		}
	}
	if v, ok := t["confirm"]; ok {
		switch c.enum(f("confirm"), v, "never", "always", "forwarded") {
		case "never":
			r.confirm, r.confirmSrc = confirmNever, r.section
		case "always":
			r.confirm, r.confirmSrc = confirmAlways, r.section
		case "forwarded":
			r.confirm, r.confirmSrc = confirmForwarded, r.section
		}
	}
	if v, ok := t["remember"]; ok {
		if d, ok := c.duration(f("remember"), v); ok {
			if d < 0 {
				c.bad(f("remember"), "remember must not be negative: use \"0s\" to never remember a yes")
			}
			r.remember = d
		}
	}
	if v, ok := t["clients"]; ok {
		if l, ok := v.([]any); ok && len(l) == 0 {
			c.bad(f("clients"), "clients is empty: list the programs that may use the key, like clients = [\"git\", \"ssh\"], or remove the line to let any program use it")
		}
		r.clients = c.clientPatterns(f("clients"), v)
		if r.clients == nil {
			r.clients = []clientPattern{} // still limited: nothing matches
		}
		r.clientsSrc = r.section
	}
	if v, ok := t["namespaces"]; ok {
		r.namespaces = c.stringList(f("namespaces"), v, func(p, s string) bool {
			if s == "" || strings.ContainsAny(s, " \t\n") {
				c.bad(p, "namespace %q is not valid: a namespace is a word like \"git\" or \"file\"", s)
				return false
			}
			return true
		})
		if r.namespaces == nil {
			r.namespaces = []string{} // an empty list: no namespace at all
		}
		r.nsSrc = r.section
	}
}

func (c *checker) unknownFields(t map[string]any, path string, known []string, where string) {
	for k := range t {
		if slices.Contains(known, k) {
			continue
		}
		msg := fmt.Sprintf("unknown field %q in %s", k, where)
		if s := closest(k, known); s != "" {
			msg += fmt.Sprintf(": did you mean %q?", s)
		} else {
			msg += "; known fields: " + strings.Join(known, ", ")
		}
		c.errAt(c.loc.key(joinPath(path, k)), "%s", msg)
	}
}

// closest returns the known field within edit distance 2 of k, if any.
func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, s := range known {
		if d := editDistance(k, s); d < bestD {
			best, bestD = s, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (c *checker) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		c.bad(path, "%s must be a string in quotes, not %s", lastField(path), tomlType(v))
	}
	return s, ok
}

func (c *checker) enum(path string, v any, allowed ...string) string {
	s, ok := c.str(path, v)
	if !ok {
		return ""
	}
	if !slices.Contains(allowed, s) {
		c.bad(path, "%s = %q is not one of %s", lastField(path), s, quoteList(allowed))
		return ""
	}
	return s
}

func (c *checker) duration(path string, v any) (time.Duration, bool) {
	s, ok := v.(string)
	if !ok {
		c.bad(path, "%s must be a duration in quotes, like \"5m\" or \"30s\"", lastField(path))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.bad(path, "%s = %q is not a duration: write it like \"90s\", \"5m\" or \"1h30m\"", lastField(path), s)
		return 0, false
	}
	return d, true
}

// stringList checks a list of strings; ok reports per element validity.
func (c *checker) stringList(path string, v any, ok func(path, s string) bool) []string {
	list, isList := v.([]any)
	if !isList {
		c.bad(path, "%s must be a list of strings, like %s = [\"…\"]", lastField(path), lastField(path))
		return nil
	}
	var out []string
	for i, e := range list {
		ep := fmt.Sprintf("%s[%d]", path, i)
		s, isStr := e.(string)
		if !isStr {
			c.bad(ep, "%s[%d] must be a string in quotes, not %s", lastField(path), i, tomlType(e))
			continue
		}
		if ok(ep, s) {
			out = append(out, c.keep(s))
		}
	}
	return out
}

func (c *checker) patterns(path string, v any) []destPattern {
	var out []destPattern
	c.stringList(path, v, func(ep, s string) bool {
		p, ok := c.compiled[s]
		if !ok {
			var err error
			if p, err = compilePattern(s); err != nil {
				c.bad(ep, "bad pattern in %s: %v", lastField(path), err)
				return false
			}
			// Compiled patterns are never modified, so rules share them.
			p.raw = c.keep(p.raw)
			for i := range p.parts {
				p.parts[i].s = c.keep(p.parts[i].s)
			}
			if c.compiled == nil {
				c.compiled = map[string]destPattern{}
			}
			c.compiled[p.raw] = p
		}
		out = append(out, p)
		return true
	})
	return c.shareList(out)
}

// shareList returns an earlier list with the same entries, if any: rules
// often repeat an allow list, and lists are never modified once parsed.
func (c *checker) shareList(l []destPattern) []destPattern {
	if len(l) == 0 {
		return l
	}
	var key strings.Builder
	for _, p := range l {
		key.WriteString(strconv.Itoa(len(p.raw)))
		key.WriteByte(':')
		key.WriteString(p.raw)
	}
	if prev, ok := c.lists[key.String()]; ok {
		return prev
	}
	if c.lists == nil {
		c.lists = map[string][]destPattern{}
	}
	l = slices.Clip(l)
	c.lists[key.String()] = l
	return l
}

// clientPatterns reads a list of client patterns (clients, [[client]]
// match).
func (c *checker) clientPatterns(path string, v any) []clientPattern {
	var out []clientPattern
	c.stringList(path, v, func(ep, s string) bool {
		p, err := compileClientPattern(s)
		if err != nil {
			c.bad(ep, "%v", err)
			return false
		}
		p.raw, p.glob = c.keep(p.raw), c.keep(p.glob)
		out = append(out, p)
		return true
	})
	return out
}

// clientRule reads a [[client]] section: match (a pattern or a list),
// optional name and keys, and the restricting rule fields. Every field
// it sets is only ever added to what the key's own rules say.
func (c *checker) clientRule(t map[string]any, path string) *clientRule {
	cr := &clientRule{}
	switch mv, ok := t["match"]; {
	case !ok:
		c.errAt(c.loc.key(path), "[[client]] needs match: a program name like \"git\", an absolute path, \"unit:NAME\", \"cgroup:/PATH\" or \"container:NAME\" (or a list of them)")
	case isString(mv):
		cr.match = c.clientPatterns(path+".match", []any{mv})
	default:
		if l, ok := mv.([]any); ok && len(l) == 0 {
			c.bad(path+".match", "match is empty: list the programs this section is for, like match = [\"claude\", \"codex\"]")
		}
		cr.match = c.clientPatterns(path+".match", mv)
	}
	name := ""
	if v, ok := t["name"]; ok {
		if s, ok := c.str(path+".name", v); ok {
			if strings.TrimSpace(s) == "" {
				c.bad(path+".name", "name is empty: remove the line, or name the programs, like name = \"coding assistants\"")
			}
			name = s
		}
	}
	if name == "" {
		raws := make([]string, len(cr.match))
		for i, p := range cr.match {
			raws[i] = p.raw
		}
		name = strings.Join(raws, ", ")
	}
	cr.section = c.keep(fmt.Sprintf("client %q", name))
	if v, ok := t["keys"]; ok {
		c.stringList(path+".keys", v, func(ep, s string) bool {
			r := &rule{}
			c.keyMatch(ep, s, r)
			cr.keys = append(cr.keys, r)
			return true
		})
	}
	tmp := rule{section: cr.section}
	c.ruleFields(t, path, &tmp)
	cr.allow, cr.deny = tmp.allow, tmp.deny
	_, cr.hasDepth = t["max_forward_depth"]
	_, cr.hasConfirm = t["confirm"]
	_, cr.hasRemember = t["remember"]
	cr.maxDepth, cr.confirm, cr.remember, cr.namespaces = tmp.maxDepth, tmp.confirm, tmp.remember, tmp.namespaces
	return cr
}

func isString(v any) bool {
	_, ok := v.(string)
	return ok
}

func lastField(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		path = path[i+1:]
	}
	if i := strings.IndexByte(path, '['); i >= 0 {
		path = path[:i]
	}
	return path
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, e := range s {
		q[i] = strconv.Quote(e)
	}
	return strings.Join(q, ", ")
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "a number"
	case float64:
		return "a number"
	case bool:
		return "true/false"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "a list of tables"
	case time.Time:
		return "a date"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// lintRules warns about [[key]] sections that can never apply.
func (p *Policy) lintRules(loc *locator) {
	type ends struct{ prefix, suffix string }
	lit := make([]ends, len(p.rules))
	for i, r := range p.rules {
		lit[i].prefix, lit[i].suffix = literalEnds(r.match)
	}
	// subsumes is globSubsumes(prev, r), first ruling out (cheaply) a
	// prev whose literal start or end r does not share.
	subsumes := func(j, i int) bool {
		prev, r := p.rules[j].match, p.rules[i].match
		return strings.HasPrefix(r, lit[j].prefix) && strings.HasSuffix(r, lit[j].suffix) && globSubsumes(prev, r)
	}
	for i, r := range p.rules {
		for j, prev := range p.rules[:i] {
			sameGlobs := prev.kind == matchComment && r.kind == matchComment && subsumes(j, i)
			samePrincipals := prev.kind == matchPrincipal && r.kind == matchPrincipal && globSubsumes(prev.value, r.value)
			if prev.match == r.match || sameGlobs || samePrincipals {
				at := loc.key(fmt.Sprintf("key[%d]", i))
				pat := loc.key(fmt.Sprintf("key[%d]", j))
				p.warnings = append(p.warnings, fmt.Sprintf("%s:%d:%d: [[key]] match %q never applies: the [[key]] at line %d (match %q) comes first and matches the same keys", p.name, at.line, at.col, r.match, pat.line, prev.match))
				break
			}
		}
	}
	p.lintCertOverlap(loc)
}

// lintCertOverlap warns where one certificate can match two [[key]]
// sections of different kinds (by key or comment, by CA, by principal):
// the first in the file applies, which may not be what was meant.
func (p *Policy) lintCertOverlap(loc *locator) {
	family := func(k matchKind) matchKind {
		if k == matchFingerprint {
			return matchComment // both select by the key itself
		}
		return k
	}
	for i, r := range p.rules {
		for j, prev := range p.rules[:i] {
			if family(prev.kind) == family(r.kind) || !(prev.kind.certBased() || r.kind.certBased()) {
				continue
			}
			at := loc.key(fmt.Sprintf("key[%d]", i))
			pat := loc.key(fmt.Sprintf("key[%d]", j))
			p.warnings = append(p.warnings, fmt.Sprintf("%s:%d:%d: ambiguous: a certificate can match both [[key]] match %q (line %d) and match %q; the first in the file (line %d) applies. Put the section you mean for such certificates first.", p.name, at.line, at.col, prev.match, pat.line, r.match, pat.line))
			break
		}
	}
}

// readKnownHosts reads the known_hosts files and builds the host index. A
// missing file is a warning; an unreadable one an error.
func (p *Policy) readKnownHosts(c *checker, readFile func(string) ([]byte, error)) error {
	b := newIndexBuilder(p.literalNames())
	warn := func(s string) { p.warnings = append(p.warnings, s) }
	var files []string
	for i, f := range p.knownHosts {
		path, err := expandPath(f, filepath.Dir(p.name))
		if err != nil {
			c.bad(fmt.Sprintf("known_hosts[%d]", i), "known_hosts %q: %v", f, err)
			continue
		}
		files = append(files, path)
		if readFile == nil {
			continue
		}
		data, err := readFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			warn(fmt.Sprintf("known_hosts file %s does not exist: no host gets a name from it", path))
			continue
		}
		if err != nil {
			c.bad(fmt.Sprintf("known_hosts[%d]", i), "cannot read known_hosts file %s: %v", path, err)
			continue
		}
		b.addFile(path, data, warn)
	}
	if len(c.errs) > 0 {
		return FileErrors(c.errs)
	}
	if b.hashedLines > 0 && p.hasGlobs() {
		warn(fmt.Sprintf("known_hosts has %d hashed entries; globs in allow/deny never match them (hashes can only be checked against exact names): name those hosts exactly or by fingerprint", b.hashedLines))
	}
	p.knownHosts = files
	p.index = b.freeze()
	return nil
}

func expandPath(f, base string) (string, error) {
	if f == "~" || strings.HasPrefix(f, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot expand ~: %w", err)
		}
		return filepath.Join(home, f[1:]), nil
	}
	if strings.HasPrefix(f, "~") {
		return "", fmt.Errorf("only ~/ (your own home) can be expanded; write the full path")
	}
	if !filepath.IsAbs(f) {
		return filepath.Join(base, f), nil
	}
	return f, nil
}

// literalNames are the exact host names the policy mentions, the only
// names hashed known_hosts entries are checked against.
func (p *Policy) literalNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, list := range p.destLists() {
		for _, dp := range list {
			for _, hp := range dp.parts {
				if hp.kind == partLiteral && !seen[hp.s] {
					seen[hp.s] = true
					out = append(out, hp.s)
				}
			}
		}
	}
	return out
}

func (p *Policy) hasGlobs() bool {
	for _, list := range p.destLists() {
		for _, dp := range list {
			for _, hp := range dp.parts {
				if hp.kind == partGlob {
					return true
				}
			}
		}
	}
	return false
}

// destLists are every allow and deny list of the file: [defaults],
// [[key]] and [[client]] sections.
func (p *Policy) destLists() [][]destPattern {
	var out [][]destPattern
	for _, r := range append([]*rule{p.defaults}, p.rules...) {
		out = append(out, r.allow, r.deny)
	}
	for _, cr := range p.clientRules {
		out = append(out, cr.allow, cr.deny)
	}
	return out
}
