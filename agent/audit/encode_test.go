package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// jsonLine is the reference: encoding/json with HTML escaping off, as the
// log wrote records before appendRecord.
func jsonLine(t *testing.T, r *Record) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatalf("json: %v", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// TestAppendRecordLayout fails when a field is added to the record types
// without teaching appendRecord (which then leaves every record to
// encoding/json).
func TestAppendRecordLayout(t *testing.T) {
	if got := currentLayout(); got != recordLayout {
		t.Fatalf("the audit record types changed: update appendRecord and recordLayout (encode.go)\nnow:  %s\nwas:  %s", got, recordLayout)
	}
}

// TestAppendRecordMatchesJSON: the hand-written encoder writes exactly the
// bytes encoding/json writes, for records with every field set or not and
// strings with everything json escapes.
func TestAppendRecordMatchesJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		r := randomRecord(rng)
		got, ok := appendRecord(nil, &r)
		if !ok {
			t.Fatalf("record %d: fast encoder declined an ordinary record: %+v", i, r)
		}
		if want := jsonLine(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("record %d differs from encoding/json:\ngot  %s\nwant %s", i, got, want)
		}
	}
}

func TestAppendRecordLeavesOddTimesToJSON(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),                  // json refuses
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("lmt", 561)), // offset with seconds
		time.Unix(1<<62, 0),                                                       // a certificate valid "forever"
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),                                 // before year 0
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600+60)),      // offset beyond a day
		time.Date(2026, 12, 6, 6, 0, 0, 0, time.FixedZone("ok", 5*3600+30*60)),    // fine: +05:30
		time.Date(2026, 12, 6, 6, 0, 0, 123000000, time.FixedZone("ok", -3*3600)), // fine
	} {
		r := Record{Time: time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC), Event: EventSign,
			Key: &Key{Fingerprint: "SHA256:x", Cert: &Cert{KeyID: "id", CAFingerprint: "SHA256:ca", ValidBefore: tm}}}
		got, ok := appendRecord(nil, &r)
		want, werr := json.Marshal(&r)
		if !ok {
			if _, err := marshalLine(&r); (err == nil) != (werr == nil) {
				t.Errorf("%v: marshalLine error %v, json error %v", tm, err, werr)
			}
			continue
		}
		if werr != nil || !bytes.Equal(got, want) {
			t.Errorf("%v: fast encoder wrote %s; json: %s (%v)", tm, got, want, werr)
		}
	}
}

// tricky are the pieces random strings are made of: everything
// encoding/json escapes or passes through.
var tricky = []string{"a", "Z", " ", "host.example", `"`, `\`, "/", "<", ">", "&", "\x00", "\x01", "\b", "\f", "\n", "\r", "\t", "\x1b", "\x1f", "\x7f",
	"→", "é", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x86", "😀", "\ufffd", "ssh (1234) ← git (1200)", "SHA256:AbC+/="}

func randomString(rng *rand.Rand) string {
	if rng.IntN(4) == 0 {
		return ""
	}
	var b strings.Builder
	for range rng.IntN(6) + 1 {
		b.WriteString(tricky[rng.IntN(len(tricky))])
	}
	return b.String()
}

func randomStrings(rng *rand.Rand) []string {
	switch rng.IntN(3) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	out := make([]string, rng.IntN(3)+1)
	for i := range out {
		out[i] = randomString(rng)
	}
	return out
}

func randomTime(rng *rand.Rand) time.Time {
	if rng.IntN(5) == 0 {
		return time.Time{}
	}
	t := time.Unix(rng.Int64N(4e9), rng.Int64N(1e9))
	switch rng.IntN(4) {
	case 0:
		t = t.Truncate(time.Second)
	case 1:
		t = t.In(time.FixedZone("x", (rng.IntN(48)-24)*1800))
	}
	if rng.IntN(2) == 0 {
		t = t.UTC()
	}
	return t
}

func randomRecord(rng *rand.Rand) Record {
	some := func() bool { return rng.IntN(2) == 0 }
	r := Record{Time: randomTime(rng), Seq: rng.Uint64(), Event: randomString(rng), Decision: randomString(rng),
		Rule: randomString(rng), Reason: randomString(rng), Detail: randomString(rng), LogID: randomString(rng),
		Torn: randomString(rng), Checkpoint: randomString(rng), Prev: randomString(rng)}
	if some() {
		r.Key = &Key{Fingerprint: randomString(rng), Type: randomString(rng), Comment: randomString(rng), Upstream: randomString(rng)}
		if some() {
			r.Key.Cert = &Cert{KeyID: randomString(rng), Principals: randomStrings(rng), CAFingerprint: randomString(rng),
				ValidAfter: randomTime(rng), ValidBefore: randomTime(rng)}
		}
	}
	if some() {
		r.Purpose = &Purpose{Kind: randomString(rng), User: randomString(rng), Namespace: randomString(rng), DataSHA256: randomString(rng)}
	}
	switch rng.IntN(3) {
	case 0:
	case 1:
		r.Path = []Hop{}
	default:
		for range rng.IntN(3) + 1 {
			r.Path = append(r.Path, Hop{Names: randomStrings(rng), Fingerprint: randomString(rng), Forwarded: some()})
		}
	}
	if some() {
		r.Client = &Client{PID: rng.IntN(1 << 22), UID: rng.IntN(70000) - 1, Exe: randomString(rng), Chain: randomString(rng)}
	}
	if some() {
		r.Prompt = &Prompt{Outcome: randomString(rng), WaitMS: rng.Int64N(1e6) - 5, RememberS: rng.Int64N(3) * 300}
	}
	return r
}
