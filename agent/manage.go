package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/policy"
)

// safe-agent's own protocol extensions, used by its CLI. They are served
// on local connections only: never through a forwarded agent.
const (
	// ExtKeySettings is a key constraint carrying the key's own settings
	// (safe-agent add --allow/--deny/--max-forward-depth) as JSON.
	ExtKeySettings = "key-settings-v0@safe-agent"
	// ExtList returns the loaded keys with their settings as JSON.
	ExtList = "list-v0@safe-agent"
	// ExtStatus returns the agent's status as JSON.
	ExtStatus = "status-v0@safe-agent"
	// ExtForget clears every remembered confirmation.
	ExtForget = "forget-v0@safe-agent"
)

// keySettingsConstraint is the payload of ExtKeySettings: the key's
// settings the agent protocol has no field for. Confirm and Lifetime
// travel as the protocol's own constraints (ssh-add -c, -t).
type keySettingsConstraint struct {
	Allow           []string `json:"allow,omitempty"`
	Deny            []string `json:"deny,omitempty"`
	MaxForwardDepth *int     `json:"max_forward_depth,omitempty"`
	Stored          bool     `json:"stored,omitempty"`
}

// AddedKeyFor is the agent protocol's add request for a key with its own
// settings: the one mapping from policy.Settings to the wire (parseAdded
// is the way back). stored says the key is also in the keystore.
func AddedKeyFor(priv any, cert *ssh.Certificate, comment string, set policy.Settings, stored bool) sshagent.AddedKey {
	// Strings, an int pointer and a bool: Marshal cannot fail.
	details, _ := json.Marshal(keySettingsConstraint{Allow: set.Allow, Deny: set.Deny, MaxForwardDepth: set.MaxForwardDepth, Stored: stored})
	ak := sshagent.AddedKey{PrivateKey: priv, Certificate: cert, Comment: comment, ConfirmBeforeUse: set.Confirm,
		ConstraintExtensions: []sshagent.ConstraintExtension{{ExtensionName: ExtKeySettings, ExtensionDetails: details}}}
	if set.Lifetime > 0 {
		ak.LifetimeSecs = uint32(min(set.Lifetime/time.Second, math.MaxUint32))
	}
	return ak
}

// Settings are the key's own settings as the agent reports them.
func (k KeyInfo) Settings() policy.Settings {
	return policy.Settings{Confirm: k.Confirm, Allow: k.Allow, Deny: k.Deny, MaxForwardDepth: k.MaxForwardDepth}
}

// KeyInfo describes a loaded key for `safe-agent list` and `status`.
type KeyInfo struct {
	Fingerprint     string    `json:"fingerprint"`
	Type            string    `json:"type"`
	Comment         string    `json:"comment"`
	PublicKey       string    `json:"public_key"`
	Certificate     bool      `json:"certificate,omitempty"`
	Confirm         bool      `json:"confirm,omitempty"`
	Expires         time.Time `json:"expires,omitzero"`
	Stored          bool      `json:"stored,omitempty"`
	Allow           []string  `json:"allow,omitempty"`
	Deny            []string  `json:"deny,omitempty"`
	MaxForwardDepth *int      `json:"max_forward_depth,omitempty"`
	Restricted      string    `json:"ssh_add_h,omitempty"`
	Cert            *CertInfo `json:"certificate_info,omitempty"`
	Upstream        string    `json:"upstream,omitempty"` // socket of the upstream agent holding it
}

// CertInfo describes a user certificate held in the agent.
type CertInfo struct {
	KeyID         string    `json:"key_id"`
	Principals    []string  `json:"principals"`
	CAFingerprint string    `json:"ca_fingerprint"`
	ValidAfter    time.Time `json:"valid_after,omitzero"`
	ValidBefore   time.Time `json:"valid_before,omitzero"` // zero: forever
}

// CertInfoOf describes a user certificate as the agent reports it.
func CertInfoOf(c *ssh.Certificate) *CertInfo {
	ci := &CertInfo{KeyID: c.KeyId, Principals: append([]string{}, c.ValidPrincipals...), CAFingerprint: ssh.FingerprintSHA256(c.SignatureKey)}
	if c.ValidAfter != 0 {
		ci.ValidAfter = certTime(c.ValidAfter)
	}
	if c.ValidBefore != ssh.CertTimeInfinity {
		ci.ValidBefore = certTime(c.ValidBefore)
	}
	return ci
}

// Status is the agent's state for `safe-agent status`.
type Status struct {
	PID          int       `json:"pid"`
	Started      time.Time `json:"started"`
	Socket       string    `json:"socket,omitempty"`
	Keystore     string    `json:"keystore,omitempty"`
	MemoryLocked bool      `json:"memory_locked"`
	Locked       bool      `json:"locked"`
	Policy       string    `json:"policy,omitempty"`
	PolicyError  string    `json:"policy_error,omitempty"`
	AuditLog     string    `json:"audit_log,omitempty"`
	Keys         []KeyInfo `json:"keys"`
	Notes        []string  `json:"notes,omitempty"`
	// UnboundClients are programs that asked for login signatures
	// without sending session-bind@openssh.com (OpenSSH before 8.9, Go's
	// x/crypto ssh, Paramiko, PuTTY…). If such a program forwards the
	// agent, requests from the far side look local: destination rules
	// cannot hold for them.
	UnboundClients []UnboundClient `json:"unbound_clients,omitempty"`
	// RestrictedKeys counts the loaded keys with an allow list (the
	// policy's or their own).
	RestrictedKeys int `json:"restricted_keys,omitempty"`
	// Upstreams are the upstream agents' health, checked when a client
	// asks (statusFor).
	Upstreams []UpstreamStatus `json:"upstreams,omitempty"`
	PromptStatus
}

// UnboundClient is one program that signed logins without a session-bind.
type UnboundClient struct {
	Exe      string    `json:"exe"`
	Process  string    `json:"process"` // the last process chain seen
	Logins   int       `json:"logins"`
	LastSeen time.Time `json:"last_seen"`
}

// StatusInfo is what the agent cannot know by itself, given by `serve`.
type StatusInfo struct {
	Socket       string
	Keystore     string
	MemoryLocked bool
	AuditLog     string
	// Notes returns current remarks (e.g. "keyring locked: stored keys not loaded").
	Notes func() []string
}

// parseKeySettings decodes ExtKeySettings into set (newIdentity checks
// the values) and reports whether the key is stored.
func parseKeySettings(details []byte, set *policy.Settings) (stored bool, err error) {
	var ks keySettingsConstraint
	if err := json.Unmarshal(details, &ks); err != nil {
		return false, fmt.Errorf("key settings: %w", err)
	}
	set.Allow, set.Deny, set.MaxForwardDepth = ks.Allow, ks.Deny, ks.MaxForwardDepth
	return ks.Stored, nil
}

func (s *Server) keyInfo(id *identity) KeyInfo {
	_, cert := id.Public.(*ssh.Certificate)
	ki := KeyInfo{
		Fingerprint: id.Fingerprint, Type: id.Type(), Comment: id.Comment,
		PublicKey:   string(ssh.MarshalAuthorizedKey(id.Public)),
		Certificate: cert, Confirm: id.Settings.Confirm, Expires: id.Expires, Stored: id.Stored,
		Allow: id.Settings.Allow, Deny: id.Settings.Deny, MaxForwardDepth: id.Settings.MaxForwardDepth,
	}
	if len(ki.PublicKey) > 0 && ki.PublicKey[len(ki.PublicKey)-1] == '\n' {
		ki.PublicKey = ki.PublicKey[:len(ki.PublicKey)-1]
	}
	if id.Dest != nil {
		ki.Restricted = id.Dest.String()
	}
	if c := id.Cert(); c != nil {
		ki.Cert = CertInfoOf(c)
	}
	ki.Upstream = id.Upstream
	return ki
}

// Status reports the agent's state.
func (s *Server) Status() Status {
	st := Status{PID: os.Getpid(), Started: s.started, Locked: s.isLocked(), Keys: []KeyInfo{}}
	info := s.opts.Info
	st.Socket, st.Keystore, st.MemoryLocked, st.AuditLog = info.Socket, info.Keystore, info.MemoryLocked, info.AuditLog
	if info.Notes != nil {
		st.Notes = info.Notes()
	}
	if s.opts.Policy != nil {
		st.Policy = s.opts.Policy.Path()
		if err := s.opts.Policy.LastError(); err != nil {
			st.PolicyError = err.Error()
		}
	}
	if !st.Locked {
		pol := s.policy()
		for _, id := range s.keys.list(s.now()) {
			st.Keys = append(st.Keys, s.keyInfo(id))
			if pol.HasAllowList(policyKey(id, nil), id.Settings) {
				st.RestrictedKeys++
			}
		}
	}
	st.UnboundClients = s.unbound.list()
	return st
}

// manage serves safe-agent's own extensions.
func (a *connAgent) manage(name string) ([]byte, error) {
	if !a.bind.Local() {
		a.log.Warn("management request refused on a forwarded or unbound connection", "extension", name, "process", a.peer.Chain)
		return nil, errors.New("refused: not a local connection")
	}
	var v any
	switch name {
	case ExtList:
		if a.srv.isLocked() {
			return nil, errLocked
		}
		infos := []KeyInfo{}
		for _, id := range a.withUpstreamKeys(a.srv.keys.list(a.srv.now())) {
			infos = append(infos, a.srv.keyInfo(id))
		}
		v = infos
	case ExtStatus:
		v = a.statusFor()
	case ExtForget:
		n := a.srv.forget()
		a.log.Info("remembered confirmations cleared", "count", n)
		v = map[string]int{"forgotten": n}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// An extension reply is a whole message: SSH_AGENT_SUCCESS, then ours.
	return append([]byte{agentSuccess}, b...), nil
}

const agentSuccess = 6

// AddKey loads a held key from the keystore (at start) into the agent,
// with its stored settings. The key is destroyed if it cannot be added.
func (s *Server) AddKey(k PrivateKey, comment string, set policy.Settings) (KeyInfo, error) {
	id, err := s.newIdentity(k, k.PublicKey(), comment, set, true)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("stored key: %w", err)
	}
	s.keys.add(id)
	s.auditEvent(audit.Record{Event: audit.EventAdd, Decision: audit.DecisionAllowed, Key: auditKey(id), Detail: fmt.Sprintf("from keystore; confirm %v", id.Settings.Confirm)})
	return s.keyInfo(id), nil
}
