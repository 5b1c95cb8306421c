package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/policy"
)

// Prompt is what a confirmation prompt says. Every field may come from
// someone else (a key comment, a remote user name, a process name), so
// Text escapes control and invisible characters: no field can add a line
// or disguise itself as another field.
type Prompt struct {
	KeyComment     string
	KeyFingerprint string // "SHA256:…"
	// Purpose is what the signature is for; see PurposeLogin,
	// PurposeSSHSIG and PurposeOpaque.
	Purpose string
	// Path is the hosts the request came through, shown in its long
	// form: "here → jump.example (forwarded) → db.internal"; a host
	// known_hosts cannot name appears as its host-key fingerprint.
	Path policy.Path
	// Process is the requesting process chain: "ssh (1234) ← git (1200)".
	Process string
	// Remember is how long a yes will be remembered (0: not at all).
	Remember time.Duration
	// Reason says why the person is asked: "key added with ssh-add -c".
	Reason string
	// Certificate describes the user certificate used, if any: see
	// CertificateText.
	Certificate string
	// ProgramFor, when set, makes this the text of a three-choice prompt
	// offering to allow ProgramExe for that long (see Choices): the
	// closing lines say what each choice does instead of Remember.
	ProgramFor time.Duration
	// ProgramExe is the requesting program's executable path.
	ProgramExe string
}

// CertificateText describes a user certificate for a prompt or notice:
// `"alice@corp" for alice, deploy; CA SHA256:…; valid until 2026-12-06 14:05`.
func CertificateText(keyID string, principals []string, ca string, validBefore time.Time) string {
	pr := "any user"
	if len(principals) > 0 {
		q := make([]string, len(principals))
		for i, p := range principals {
			q[i] = word(p)
		}
		pr = strings.Join(q, ", ")
	}
	until := "no expiry"
	if !validBefore.IsZero() {
		until = "valid until " + validBefore.Local().Format("2006-01-02 15:04:05")
	}
	return quote(keyID, maxHop) + " for " + pr + "; CA " + clean(ca, maxHop) + "; " + until
}

// Field length limits, in runes, so a hostile field cannot push the rest
// of the prompt out of a small window.
const (
	maxField   = 200
	maxProcess = 300
	maxHop     = 100
)

// Text is the prompt as shown, a few short lines:
//
//	Allow use of key "work" (SHA256:…)?
//
//	To: log in as deploy on db.internal
//	Path: here → jump.example (forwarded) → db.internal
//	By: ssh (1234) ← git (1200) ← zsh (1000)
//	Asked because key added with ssh-add -c
//
//	A yes is remembered for 5m for this key, path and program.
//
// Prompt programs wrap long lines themselves (checked with
// gnome-ssh-askpass and zenity).
func (p Prompt) Text() string {
	var b strings.Builder
	b.WriteString("Allow use of key ")
	b.WriteString(p.keyName())
	b.WriteString("?\n\n")
	if p.Certificate != "" {
		b.WriteString("Certificate: " + clean(p.Certificate, maxField) + "\n")
	}
	b.WriteString("To: " + p.purpose() + "\n")
	b.WriteString("Path: " + p.path() + "\n")
	b.WriteString("By: " + p.process() + "\n")
	if p.Reason != "" {
		b.WriteString("Asked because " + clean(p.Reason, maxField) + "\n")
	}
	b.WriteString("\n")
	switch {
	case p.ProgramFor > 0:
		exe := "this program"
		if p.ProgramExe != "" {
			exe = clean(p.ProgramExe, maxField)
		}
		b.WriteString(`"` + labelOnce + `" covers this request only.` + "\n")
		b.WriteString(`"` + ProgramLabel(p.ProgramExe, p.ProgramFor) + `" also lets ` + exe +
			" use this key for the same purpose and path for " + longDuration(p.ProgramFor) + " without asking.")
	case p.Remember > 0:
		b.WriteString("A yes is remembered for " + formatDuration(p.Remember) + " for this key, path and program.")
	default:
		b.WriteString("Nothing is remembered.")
	}
	return b.String()
}

// keyName is `"comment" (SHA256:…)`, or whichever of the two is known.
func (p Prompt) keyName() string {
	fp := clean(p.KeyFingerprint, maxField)
	if p.KeyComment == "" {
		if fp == "" {
			return "(unknown key)"
		}
		return fp
	}
	name := quote(p.KeyComment, maxField)
	if fp == "" {
		return name
	}
	return name + " (" + fp + ")"
}

func (p Prompt) purpose() string {
	if p.Purpose == "" {
		return PurposeOpaque()
	}
	return clean(p.Purpose, maxField)
}

// path is the path's long form with every host name made safe to show
// (a name may come from someone else's known_hosts entry or host key).
func (p Prompt) path() string {
	return p.Path.WithNames(func(n string) string { return clean(n, maxHop) }).Long()
}

func (p Prompt) process() string {
	if p.Process == "" {
		return "unknown process"
	}
	return clean(p.Process, maxProcess)
}

// PurposeLogin is the purpose of a login signature: "log in as deploy on
// db.internal". A user or host name with unusual characters is quoted so
// that it cannot read as more words ("log in as "root on a" on b").
func PurposeLogin(user, host string) string {
	switch {
	case user == "" && host == "":
		return "log in"
	case user == "":
		return "log in on " + word(host)
	case host == "":
		return "log in as " + word(user)
	}
	return "log in as " + word(user) + " on " + word(host)
}

// PurposeLoginUnknownHost is the purpose of a login whose destination the
// agent cannot name (no session-bind for it, or a plain "publickey" login
// through a forwarded agent).
func PurposeLoginUnknownHost(user string) string {
	if user == "" {
		return "log in on an unknown host"
	}
	return "log in as " + word(user) + " on an unknown host"
}

// PurposeSSHSIG is the purpose of an SSHSIG signature (ssh-keygen -Y sign)
// in namespace.
func PurposeSSHSIG(namespace string) string {
	switch namespace {
	case "git":
		return "sign a git commit or tag"
	case "file":
		return "sign a file"
	}
	return fmt.Sprintf("sign data in namespace %q", namespace)
}

// PurposeOpaque is the purpose of data the agent cannot classify.
func PurposeOpaque() string { return "sign data of unknown kind" }

// word returns s as is when it is a plain name, else quoted.
func word(s string) string {
	if s == "" || len(s) > maxHop {
		return quote(s, maxHop)
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-@+:[]", r))) {
			return quote(s, maxHop)
		}
	}
	return s
}

// quote is s, cut to max runes, in Go quotes: a quote character inside
// cannot end the quoted text early, and control and invisible characters
// are escaped (strconv.Quote keeps a few invisible letters, such as the
// Hangul filler U+3164, that termtext escapes).
func quote(s string, max int) string {
	s, cut := cutRunes(s, max)
	if cut {
		s += "…"
	}
	return termtext.Escape(strconv.Quote(s))
}

// clean makes s safe to show on one line: invalid UTF-8, control
// characters (newlines included) and invisible formatting characters
// (bidi overrides, zero-width spaces) become visible escapes (see
// termtext.Escape), and s is cut to max runes.
func clean(s string, max int) string {
	s, cut := cutRunes(s, max)
	s = termtext.Escape(s)
	if cut {
		s += "…"
	}
	return s
}

// cutRunes cuts s to max runes (an invalid byte counts as one); cut says
// whether anything was cut.
func cutRunes(s string, max int) (string, bool) {
	n := 0
	for i := range s {
		if n == max {
			return s[:i], true
		}
		n++
	}
	return s, false
}

// formatDuration prints 5m, 1h30m, 45s rather than 5m0s.
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Second {
		return "under a second"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Notice is the title and body of a desktop notification about one
// request: allowed (used) or refused, with the reason. The body names the
// key, purpose, path and process like a prompt does.
func Notice(p Prompt, allowed bool, reason string) (title, body string) {
	name := p.KeyComment
	if name == "" {
		name = p.KeyFingerprint
	}
	if allowed {
		title = "safe-agent: key " + quote(name, maxField) + " used"
	} else {
		title = "safe-agent refused key " + quote(name, maxField)
	}
	var b strings.Builder
	b.WriteString("Key: " + p.keyName() + "\n")
	if p.Certificate != "" {
		b.WriteString("Certificate: " + clean(p.Certificate, maxField) + "\n")
	}
	b.WriteString("To: " + p.purpose() + "\n")
	b.WriteString("Path: " + p.path() + "\n")
	b.WriteString("By: " + p.process())
	if reason != "" {
		b.WriteString("\nWhy: " + clean(reason, maxField))
	}
	return title, b.String()
}

// CertExpired is the notification for a certificate that reached its
// ValidBefore and was removed from the agent.
func CertExpired(comment, fingerprint, keyID string, principals []string) (title, body string) {
	name := comment
	if name == "" {
		name = fingerprint
	}
	title = "safe-agent: certificate " + quote(keyID, maxField) + " expired"
	pr := "none"
	if len(principals) > 0 {
		q := make([]string, len(principals))
		for i, p := range principals {
			q[i] = word(p)
		}
		pr = strings.Join(q, ", ")
	}
	body = "Key: " + quote(name, maxField) + " (" + clean(fingerprint, maxField) + ")\n" +
		"Principals: " + clean(pr, maxField) + "\n" +
		"It was removed from the agent: renew it (for example with your CA's login command) before your next login."
	return title, body
}
