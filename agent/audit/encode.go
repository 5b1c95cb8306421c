package audit

import (
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// appendRecord appends r as marshalLine encodes it (encoding/json, HTML
// escaping off), byte for byte, without reflection: encoding a record was
// a tenth of the agent's own work per signature. It reports false when r
// holds something it leaves to encoding/json (a time outside years
// 0–9999, which json refuses) or when the record types have changed since
// it was written (recordLayout): the caller then encodes with json.
func appendRecord(b []byte, r *Record) ([]byte, bool) {
	if !fastLayout || !jsonTime(r.Time) {
		return b, false
	}
	if k := r.Key; k != nil && k.Cert != nil && (!jsonTime(k.Cert.ValidAfter) || !jsonTime(k.Cert.ValidBefore)) {
		return b, false
	}
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = appendField(b, "event", r.Event)
	b = appendOmit(b, "decision", r.Decision)
	b = appendOmit(b, "rule", r.Rule)
	b = appendOmit(b, "reason", r.Reason)
	if k := r.Key; k != nil {
		b = append(b, `,"key":{"fingerprint":`...)
		b = appendString(b, k.Fingerprint)
		b = appendOmit(b, "type", k.Type)
		b = appendOmit(b, "comment", k.Comment)
		if c := k.Cert; c != nil {
			b = append(b, `,"certificate":{"key_id":`...)
			b = appendString(b, c.KeyID)
			if len(c.Principals) > 0 {
				b = appendStrings(append(b, `,"principals":`...), c.Principals)
			}
			b = appendField(b, "ca_fingerprint", c.CAFingerprint)
			b = appendTime(b, "valid_after", c.ValidAfter)
			b = appendTime(b, "valid_before", c.ValidBefore)
			b = append(b, '}')
		}
		b = appendOmit(b, "upstream", k.Upstream)
		b = append(b, '}')
	}
	if p := r.Purpose; p != nil {
		b = append(b, `,"purpose":{"kind":`...)
		b = appendString(b, p.Kind)
		b = appendOmit(b, "user", p.User)
		b = appendOmit(b, "namespace", p.Namespace)
		b = appendOmit(b, "data_sha256", p.DataSHA256)
		b = append(b, '}')
	}
	if len(r.Path) > 0 {
		b = append(b, `,"path":[`...)
		for i, h := range r.Path {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if len(h.Names) > 0 {
				b = append(appendStrings(append(b, `"names":`...), h.Names), ',')
			}
			b = append(b, `"fingerprint":`...)
			b = appendString(b, h.Fingerprint)
			if h.Forwarded {
				b = append(b, `,"forwarded":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if c := r.Client; c != nil {
		b = append(b, `,"client":{"pid":`...)
		b = strconv.AppendInt(b, int64(c.PID), 10)
		b = append(b, `,"uid":`...)
		b = strconv.AppendInt(b, int64(c.UID), 10)
		b = appendOmit(b, "exe", c.Exe)
		b = appendOmit(b, "chain", c.Chain)
		b = append(b, '}')
	}
	if p := r.Prompt; p != nil {
		b = append(b, `,"prompt":{"outcome":`...)
		b = appendString(b, p.Outcome)
		b = append(b, `,"wait_ms":`...)
		b = strconv.AppendInt(b, p.WaitMS, 10)
		if p.RememberS != 0 {
			b = append(b, `,"remember_s":`...)
			b = strconv.AppendInt(b, p.RememberS, 10)
		}
		b = append(b, '}')
	}
	b = appendOmit(b, "detail", r.Detail)
	b = appendOmit(b, "log_id", r.LogID)
	b = appendOmit(b, "torn", r.Torn)
	b = appendOmit(b, "checkpoint", r.Checkpoint)
	b = appendField(b, "prev", r.Prev)
	return append(b, '}'), true
}

// appendField appends ,"name":"value".
func appendField(b []byte, name, v string) []byte {
	b = append(append(append(b, `,"`...), name...), `":`...)
	return appendString(b, v)
}

// appendOmit is appendField for an omitempty string.
func appendOmit(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, name, v)
}

// appendTime appends an omitzero time.
func appendTime(b []byte, name string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(append(append(b, `,"`...), name...), `":"`...)
	return append(t.AppendFormat(b, time.RFC3339Nano), '"')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// jsonTime: t is one encoding/json writes as AppendFormat(RFC3339Nano)
// does: years 0–9999 (json fails on others) and a zone offset of whole
// minutes under 24 h (others are left to json).
func jsonTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off%60 == 0 && off > -24*3600 && off < 24*3600
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping off:
// '"', '\\' and control characters escaped (\b \f \n \r \t short),
// invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped, the rest as is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(append(b, s[start:i]...), `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(b, s[start:]...), '"')
}

// recordLayout is the field list (name and json tag) of the record types
// appendRecord was written for. A field added to them without teaching
// appendRecord turns the fast encoder off, and TestAppendRecordLayout
// fails, instead of a field going missing from the log.
const recordLayout = `Record{Time:time Seq:seq Event:event Decision:decision,omitempty Rule:rule,omitempty Reason:reason,omitempty Key:key,omitempty Purpose:purpose,omitempty Path:path,omitempty Client:client,omitempty Prompt:prompt,omitempty Detail:detail,omitempty LogID:log_id,omitempty Torn:torn,omitempty Checkpoint:checkpoint,omitempty Prev:prev} ` +
	`Key{Fingerprint:fingerprint Type:type,omitempty Comment:comment,omitempty Cert:certificate,omitempty Upstream:upstream,omitempty} ` +
	`Cert{KeyID:key_id Principals:principals,omitempty CAFingerprint:ca_fingerprint ValidAfter:valid_after,omitzero ValidBefore:valid_before,omitzero} ` +
	`Purpose{Kind:kind User:user,omitempty Namespace:namespace,omitempty DataSHA256:data_sha256,omitempty} ` +
	`Hop{Names:names,omitempty Fingerprint:fingerprint Forwarded:forwarded,omitempty} ` +
	`Client{PID:pid UID:uid Exe:exe,omitempty Chain:chain,omitempty} ` +
	`Prompt{Outcome:outcome WaitMS:wait_ms RememberS:remember_s,omitempty}`

// fastLayout: the record types are still those of recordLayout.
var fastLayout = currentLayout() == recordLayout

// currentLayout describes the record types as recordLayout does.
func currentLayout() string {
	var parts []string
	for _, t := range []reflect.Type{reflect.TypeFor[Record](), reflect.TypeFor[Key](), reflect.TypeFor[Cert](),
		reflect.TypeFor[Purpose](), reflect.TypeFor[Hop](), reflect.TypeFor[Client](), reflect.TypeFor[Prompt]()} {
		fields := make([]string, t.NumField())
		for i := range fields {
			f := t.Field(i)
			fields[i] = f.Name + ":" + f.Tag.Get("json")
		}
		parts = append(parts, t.Name()+"{"+strings.Join(fields, " ")+"}")
	}
	return strings.Join(parts, " ")
}
