package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Event names. EventHeader and EventTorn are written by the Log itself;
// Append refuses them.
const (
	EventSign               = "sign"
	EventList               = "list"
	EventAdd                = "add"
	EventRemove             = "remove"
	EventRemoveAll          = "remove-all"
	EventLock               = "lock"
	EventUnlock             = "unlock"
	EventBindFailed         = "bind-failed"
	EventPolicyLoad         = "policy-load"
	EventPolicyReloadFailed = "policy-reload-failed"
	EventStart              = "start"
	EventStop               = "stop"
	EventRateLimited        = "rate-limited"
	EventSummary            = "summary"
	EventConnRefused        = "connection-refused"
	EventHeader             = "header"
	EventTorn               = "torn-tail"
)

// Decisions.
const (
	DecisionAllowed = "allowed"
	DecisionDenied  = "denied"
)

// Purpose kinds.
const (
	PurposeLogin  = "login"
	PurposeSSHSig = "sshsig"
	PurposeOpaque = "opaque"
)

// Prompt outcomes.
const (
	PromptYes        = "yes"
	PromptNo         = "no"
	PromptTimeout    = "timeout"
	PromptError      = "error"
	PromptRemembered = "remembered"
	// PromptYesProgram: "Allow <program> for N minutes"; RememberS is N.
	PromptYesProgram = "yes-program"
)

// Record is one line of the audit log. Seq, Prev, LogID, Torn and Checkpoint belong to
// the chain and are set by the Log; everything else by the caller.
type Record struct {
	Time     time.Time `json:"time"`
	Seq      uint64    `json:"seq"`
	Event    string    `json:"event"`
	Decision string    `json:"decision,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Key      *Key      `json:"key,omitempty"`
	Purpose  *Purpose  `json:"purpose,omitempty"`
	Path     []Hop     `json:"path,omitempty"`
	Client   *Client   `json:"client,omitempty"`
	Prompt   *Prompt   `json:"prompt,omitempty"`
	// Detail is free text for events other than sign: a policy path, an
	// error, a count of keys.
	Detail string `json:"detail,omitempty"`
	// LogID is set on header records only: a random id for this file.
	LogID string `json:"log_id,omitempty"`
	// Torn is set on the record written after a torn line: the hex SHA-256
	// of the torn bytes (without the newline added after them).
	Torn string `json:"torn,omitempty"`
	// Checkpoint is set on header records only: the name of the file in
	// which the writer records the files rotation deletes. Its presence
	// tells a later writer that a missing checkpoint was deleted.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Prev is the hex SHA-256 of the previous line, without its newline.
	Prev string `json:"prev"`
}

// Key names the key a request was about. Never key material.
type Key struct {
	Fingerprint string `json:"fingerprint"`
	Type        string `json:"type,omitempty"`
	Comment     string `json:"comment,omitempty"`
	// Cert is the user certificate used, when there was one: held in the
	// agent, or named by the login for the plain key.
	Cert *Cert `json:"certificate,omitempty"`
	// Upstream is the socket of the upstream agent that holds the key,
	// for keys safe-agent fronts but does not hold.
	Upstream string `json:"upstream,omitempty"`
}

// Cert identifies a user certificate.
type Cert struct {
	KeyID         string    `json:"key_id"`
	Principals    []string  `json:"principals,omitempty"`
	CAFingerprint string    `json:"ca_fingerprint"`
	ValidAfter    time.Time `json:"valid_after,omitzero"`
	ValidBefore   time.Time `json:"valid_before,omitzero"` // zero: forever
}

// Purpose says what a signature was for.
type Purpose struct {
	Kind       string `json:"kind"` // PurposeLogin, PurposeSSHSig or PurposeOpaque
	User       string `json:"user,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	DataSHA256 string `json:"data_sha256,omitempty"` // hex; see DataHash. Never the data itself.
}

// Hop is one verified session-bind of the connection's path.
type Hop struct {
	Names       []string `json:"names,omitempty"`
	Fingerprint string   `json:"fingerprint"`
	Forwarded   bool     `json:"forwarded,omitempty"`
}

// Client is the local process that asked.
type Client struct {
	PID   int    `json:"pid"`
	UID   int    `json:"uid"`
	Exe   string `json:"exe,omitempty"`
	Chain string `json:"chain,omitempty"`
}

// Prompt is the outcome of asking the person at the desktop.
type Prompt struct {
	Outcome string `json:"outcome"` // PromptYes, PromptNo, …
	WaitMS  int64  `json:"wait_ms"`
	// RememberS is how long, in seconds, this yes now covers the same
	// key, path, purpose and program without asking (0: not at all).
	RememberS int64 `json:"remember_s,omitempty"`
}

// DataHash is the value for Purpose.DataSHA256.
func DataHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// lineHash is the chain hash of one line (without its newline).
func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// ParseRecord parses one log line (with or without its trailing newline).
// Unknown fields are ignored so that older readers accept newer logs; the
// chain hash covers the raw bytes, so nothing is lost by ignoring them.
func ParseRecord(line []byte) (Record, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	var r Record
	if len(line) == 0 {
		return r, errors.New("empty line")
	}
	if line[0] != '{' {
		return r, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("not a valid record: %w", err)
	}
	if r.Event == "" {
		return Record{}, errors.New("not a valid record: no event")
	}
	return r, nil
}

// marshalLine encodes r as one line without the newline. HTML escaping is
// off so that "→" and "<" stay readable in the file.
func marshalLine(r *Record) ([]byte, error) {
	if b, ok := appendRecord(nil, r); ok {
		return b, nil
	}
	var b bytes.Buffer
	if err := newLineEncoder(&b).Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// newLineEncoder writes records as marshalLine encodes them, each followed
// by a newline.
func newLineEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}
