package keystore

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The keyring item format.
//
// Each logical record (one key, or the index) is JSON, base64-encoded into
// an item value:
//
//	safe-agent:1:<base64 of the JSON>
//
// A value longer than the chunk limit is split: the main item holds a
// manifest and the base64 text is cut into chunk items, written before the
// manifest:
//
//	main item:   safe-agent:1:chunked:<n>:<sha256 hex of the JSON>
//	chunk items: account "<account>#<first 16 hex of the sha256>.<i>", i = 1..n,
//	             each a piece of the base64 text
//
// Naming chunks after the content's hash means rewriting a record never
// overwrites the chunks the current manifest points to: a crash mid-write
// leaves the old record intact plus unreferenced chunks (the next Put or
// Delete of that key removes them).
const (
	itemPrefix      = "safe-agent:1:"
	chunkedPrefix   = itemPrefix + "chunked:"
	itemVersion     = 1
	indexAccount    = "index"
	maxChunks       = 64
	defaultChunkLen = 2048 // bytes per item value: fits the macOS and Windows keychain limits
)

var fingerprintRE = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}$`)

func validFingerprint(fp string) bool { return fingerprintRE.MatchString(fp) }

// errCorrupt marks data that cannot be decoded: reported, never retried.
var errCorrupt = errors.New("corrupt keyring item")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}

// header is a decoded main item value.
type header struct {
	single  []byte // base64 text of a single-item record (a view into the value)
	chunks  int    // > 0: a manifest
	sum     [sha256.Size]byte
	sumText string
}

func (h header) chunkAccount(account string, i int) string {
	return chunkAccount(account, h.sumText, i)
}

func chunkAccount(account, sumHex string, i int) string {
	return account + "#" + sumHex[:16] + "." + strconv.Itoa(i)
}

func parseHeader(value []byte) (header, error) {
	switch {
	case bytes.HasPrefix(value, []byte(chunkedPrefix)):
		n, sum, ok := strings.Cut(string(value[len(chunkedPrefix):]), ":")
		if !ok {
			return header{}, corruptf("bad chunk manifest")
		}
		count, err := strconv.Atoi(n)
		if err != nil || count < 1 || count > maxChunks || strconv.Itoa(count) != n {
			return header{}, corruptf("bad chunk count %q", n)
		}
		var h header
		if len(sum) != 2*sha256.Size || strings.ToLower(sum) != sum {
			return header{}, corruptf("bad chunk checksum")
		}
		if _, err := hex.Decode(h.sum[:], []byte(sum)); err != nil {
			return header{}, corruptf("bad chunk checksum")
		}
		h.chunks, h.sumText = count, sum
		return h, nil
	case bytes.HasPrefix(value, []byte(itemPrefix)):
		return header{single: value[len(itemPrefix):]}, nil
	default:
		return header{}, corruptf("not a safe-agent item (no %q prefix)", itemPrefix)
	}
}

// decodeBase64 decodes strictly into a new slice the caller must wipe.
func decodeBase64(text []byte) ([]byte, error) {
	out := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Strict().Decode(out, text)
	if err != nil {
		clear(out)
		return nil, corruptf("bad base64: %v", err)
	}
	return out[:n], nil
}

// encodeItems turns a record into the main item value and the chunk values
// (nil when it fits one item). The caller wipes the returned bytes.
func encodeItems(payload []byte, limit int) (main []byte, chunks [][]byte, sumHex string) {
	text := make([]byte, len(itemPrefix)+base64.StdEncoding.EncodedLen(len(payload)))
	copy(text, itemPrefix)
	base64.StdEncoding.Encode(text[len(itemPrefix):], payload)
	if len(text) <= limit {
		return text, nil, ""
	}
	b64 := text[len(itemPrefix):]
	sum := sha256.Sum256(payload)
	sumHex = hex.EncodeToString(sum[:])
	for len(b64) > 0 {
		n := min(limit, len(b64))
		chunks = append(chunks, b64[:n:n])
		b64 = b64[n:]
	}
	main = []byte(fmt.Sprintf("%s%d:%s", chunkedPrefix, len(chunks), sumHex))
	return main, chunks, sumHex
}

// keyItem is the JSON of one stored key.
type keyItem struct {
	V           int          `json:"v"`
	Fingerprint string       `json:"fingerprint"`
	Comment     string       `json:"comment,omitempty"`
	Added       time.Time    `json:"added"`
	Settings    settingsItem `json:"settings"`
	Key         []byte       `json:"key"` // the PEM; JSON base64 decodes into a slice we can wipe
}

type settingsItem struct {
	Confirm         bool     `json:"confirm,omitempty"`
	Allow           []string `json:"allow,omitempty"`
	Deny            []string `json:"deny,omitempty"`
	MaxForwardDepth *int     `json:"max_forward_depth,omitempty"`
	Lifetime        string   `json:"lifetime,omitempty"` // time.Duration syntax
}

type indexItem struct {
	V    int      `json:"v"`
	Keys []string `json:"keys"`
}

func encodeStoredKey(k StoredKey) ([]byte, error) {
	if !validFingerprint(k.Fingerprint) {
		return nil, fmt.Errorf("store key: bad fingerprint %q", k.Fingerprint)
	}
	if len(k.PrivateKeyPEM) == 0 {
		return nil, fmt.Errorf("store key %s: no private key", k.Fingerprint)
	}
	if err := checkSettings(k.Settings); err != nil {
		return nil, fmt.Errorf("store key %s: %w", k.Fingerprint, err)
	}
	it := keyItem{
		V:           itemVersion,
		Fingerprint: k.Fingerprint,
		Comment:     k.Comment,
		Added:       k.Added.UTC(),
		Settings: settingsItem{
			Confirm:         k.Settings.Confirm,
			Allow:           k.Settings.Allow,
			Deny:            k.Settings.Deny,
			MaxForwardDepth: k.Settings.MaxForwardDepth,
		},
		Key: k.PrivateKeyPEM,
	}
	if k.Settings.Lifetime != 0 {
		it.Settings.Lifetime = k.Settings.Lifetime.String()
	}
	return json.Marshal(it)
}

func checkSettings(s Settings) error {
	if s.MaxForwardDepth != nil && *s.MaxForwardDepth < 0 {
		return fmt.Errorf("max forward depth %d is negative", *s.MaxForwardDepth)
	}
	if s.Lifetime < 0 {
		return fmt.Errorf("lifetime %s is negative", s.Lifetime)
	}
	for _, d := range slices.Concat(s.Allow, s.Deny) {
		if strings.TrimSpace(d) == "" {
			return errors.New("empty destination in allow/deny")
		}
	}
	return nil
}

// decodeStoredKey decodes one key record. json.Unmarshal works on payload
// in place (a json.Decoder would buffer a copy we could not wipe); the only
// copy of the key it makes is the decoded PEM, which the caller wipes.
// Unknown fields are refused, not ignored: a field a newer version added may
// be a restriction, and dropping a restriction silently would make an older
// agent less strict.
func decodeStoredKey(payload []byte) (StoredKey, error) {
	if err := knownFields(payload, "v", "fingerprint", "comment", "added", "settings", "key"); err != nil {
		return StoredKey{}, err
	}
	var it keyItem
	if err := json.Unmarshal(payload, &it); err != nil {
		clear(it.Key)
		return StoredKey{}, corruptf("%v", err)
	}
	k, err := it.storedKey()
	if err != nil {
		clear(it.Key)
		return StoredKey{}, err
	}
	return k, nil
}

// skipValue accepts any JSON value without copying it.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// knownFields fails on a top-level field not in known.
func knownFields(payload []byte, known ...string) error {
	var fields map[string]skipValue
	if err := json.Unmarshal(payload, &fields); err != nil {
		return corruptf("%v", err)
	}
	for name := range fields {
		if !slices.Contains(known, name) {
			return corruptf("unknown field %q: written by a newer safe-agent?", name)
		}
	}
	return nil
}

// UnmarshalJSON refuses unknown settings (see decodeStoredKey).
func (s *settingsItem) UnmarshalJSON(b []byte) error {
	type plain settingsItem
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	*s = settingsItem(p)
	return nil
}

func (it keyItem) storedKey() (StoredKey, error) {
	if it.V != itemVersion {
		return StoredKey{}, corruptf("format version %d: written by a newer safe-agent? (this one reads version %d)", it.V, itemVersion)
	}
	if !validFingerprint(it.Fingerprint) {
		return StoredKey{}, corruptf("bad fingerprint %q", it.Fingerprint)
	}
	if len(it.Key) == 0 {
		return StoredKey{}, corruptf("no private key")
	}
	s := Settings{
		Confirm:         it.Settings.Confirm,
		Allow:           it.Settings.Allow,
		Deny:            it.Settings.Deny,
		MaxForwardDepth: it.Settings.MaxForwardDepth,
	}
	if it.Settings.Lifetime != "" {
		d, err := time.ParseDuration(it.Settings.Lifetime)
		if err != nil {
			return StoredKey{}, corruptf("bad lifetime: %v", err)
		}
		s.Lifetime = d
	}
	if err := checkSettings(s); err != nil {
		return StoredKey{}, corruptf("%v", err)
	}
	return StoredKey{
		Fingerprint:   it.Fingerprint,
		Comment:       it.Comment,
		PrivateKeyPEM: it.Key,
		Settings:      s,
		Added:         it.Added,
	}, nil
}

func encodeIndex(fps []string) ([]byte, error) {
	return json.Marshal(indexItem{V: itemVersion, Keys: fps})
}

func decodeIndex(payload []byte) ([]string, error) {
	var it indexItem
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it); err != nil {
		return nil, corruptf("index: %v", err)
	}
	if dec.More() {
		return nil, corruptf("index: data after the record")
	}
	if it.V != itemVersion {
		return nil, corruptf("index format version %d: written by a newer safe-agent? (this one reads version %d)", it.V, itemVersion)
	}
	seen := make(map[string]bool, len(it.Keys))
	for _, fp := range it.Keys {
		if !validFingerprint(fp) {
			return nil, corruptf("index: bad fingerprint %q", fp)
		}
		if seen[fp] {
			return nil, corruptf("index: %s listed twice", fp)
		}
		seen[fp] = true
	}
	return it.Keys, nil
}

// decodeSingleStoredKey decodes a key stored in one item: the whole path
// from item value to StoredKey (used by the fuzz target and Load).
func decodeSingleStoredKey(value []byte) (StoredKey, error) {
	h, err := parseHeader(value)
	if err != nil {
		return StoredKey{}, err
	}
	if h.chunks > 0 {
		return StoredKey{}, corruptf("chunked item needs its chunks")
	}
	payload, err := decodeBase64(h.single)
	if err != nil {
		return StoredKey{}, err
	}
	defer clear(payload)
	return decodeStoredKey(payload)
}
