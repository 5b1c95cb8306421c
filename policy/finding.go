package policy

import "fmt"

// FindingKind names what decided a request. Callers that need to know why
// (the prompt's "Asked because" line, tools) branch on it, never on the
// wording of Decision.Reason.
type FindingKind int

const (
	FindNone FindingKind = iota // no finding: a zero Decision, or a key Visible shows

	// The login checks (checks.go), in the order they run.
	FindNotClient        // the key is limited by clients, and no process of the chain is listed
	FindClientUnknown    // the chain cannot be read, and a [[client]] section covers the key
	FindNoBindRestricted // no session-bind at all, and an allow list
	FindNoBindLocal      // no session-bind, no allow list: a local login
	FindBindFailed       // a session-bind failed, and an allow list
	FindBindOrder        // a login bind followed by more binds
	FindRevoked          // a hop's key is @revoked in known_hosts
	FindDenied           // a hop matches a deny entry
	FindTooDeep          // more forwarding hops than max_forward_depth
	FindNotAllowed       // a hop matches no entry of an allow list
	FindNoNextHop        // (lists) no allow entry continues from the last forwarding hop
	FindUnbound          // an allow list, and the destination is not bound
	FindUnknownDest      // no allow list, and the destination cannot be named: unknown_destination decides
	FindAllowed          // allowed: by an allow entry, a namespace, or for want of a restriction

	// Outside the login checks.
	FindBadSettings // the key's own settings do not compile
	FindNotLocal    // an SSHSIG or other non-login signature from beyond this machine
	FindNamespace   // an SSHSIG namespace the section does not list

	// Causes to ask (a Confirm decision's first cause).
	FindConfirmAlways    // confirm = "always" in Source
	FindConfirmForwarded // confirm = "forwarded" in Source, and the path forwards
	FindConfirmKey       // the key was added to be confirmed on every use
)

var findingNames = [...]string{
	FindNone: "none", FindNotClient: "not-client", FindClientUnknown: "client-unknown",
	FindNoBindRestricted: "no-bind-restricted", FindNoBindLocal: "no-bind-local",
	FindBindFailed: "bind-failed", FindBindOrder: "bind-order", FindRevoked: "revoked",
	FindDenied: "denied", FindTooDeep: "too-deep", FindNotAllowed: "not-allowed",
	FindNoNextHop: "no-next-hop", FindUnbound: "unbound", FindUnknownDest: "unknown-destination",
	FindAllowed: "allowed", FindBadSettings: "bad-settings", FindNotLocal: "not-local",
	FindNamespace: "namespace", FindConfirmAlways: "confirm-always",
	FindConfirmForwarded: "confirm-forwarded", FindConfirmKey: "confirm-key",
}

func (k FindingKind) String() string {
	if k >= 0 && int(k) < len(findingNames) {
		return findingNames[k]
	}
	return fmt.Sprintf("finding(%d)", int(k))
}

// Finding is what decided a request, as data; Decision.Rule names the
// same rule as text and Decision.Reason says it in a sentence.
type Finding struct {
	Kind FindingKind
	// Source is the section the deciding setting is in: `defaults`,
	// `key "work"`, `client "git"` or `stored settings` (the key's own);
	// "" for built-in rules and top-level settings.
	Source string
	// List is the list that decided ("allow", "deny", "clients",
	// "namespaces"), "" if none.
	List string
	// Entry is the deciding entry's index in List; -1 if none.
	Entry int
	// Hop is the index into Request.Hops of the hop concerned; -1 if none.
	Hop int
}

// found is a Finding without an entry or a hop.
func found(kind FindingKind, src, list string) Finding {
	return Finding{Kind: kind, Source: src, List: list, Entry: -1, Hop: -1}
}

// Text is the decision in a sentence for people: what was refused or
// asked, why, and what to change.
func (d Decision) Text() string { return d.Reason }

// Unconfirmed is the text for a Confirm decision whose prompt did not end
// in a yes: the question, then why not ("the person said no").
func (d Decision) Unconfirmed(why string) string {
	q := d.ask
	if q == "" {
		q = d.Reason
	}
	return fmt.Sprintf("%s; not confirmed (%s)", q, why)
}
