package policy

import (
	"strconv"
	"strings"
)

// position is a 1-based line and byte column, as BurntSushi/toml reports.
type position struct{ line, col int }

// locator finds where keys and values sit in a TOML text that already
// parsed, so semantic errors can say FILE:LINE:COL. The toml package keeps
// key positions private (and one per key name, not per [[key]] entry), so
// this is a small scanner that names every key and value with the same
// paths the checker uses: "known_hosts[0]", "defaults.confirm",
// "key[2].allow[1]".
type locator struct {
	src    string
	keys   map[string]position
	values map[string]position
	arrays map[string]int // array-of-tables path → entries seen
	i      int

	line, lineStart int // newlines before lineStart, the start of the last line pos saw
}

func newLocator(src string) *locator {
	l := &locator{src: src, keys: map[string]position{}, values: map[string]position{}, arrays: map[string]int{}}
	l.scan()
	return l
}

// key is where path's key is written; value where its value starts. Both
// fall back to the closest enclosing path, then to 1:1.
func (l *locator) key(path string) position   { return l.find(path, false) }
func (l *locator) value(path string) position { return l.find(path, true) }

func (l *locator) find(path string, value bool) position {
	for path != "" {
		first, second := l.keys, l.values
		if value {
			first, second = l.values, l.keys
		}
		if p, ok := first[path]; ok {
			return p
		}
		if p, ok := second[path]; ok {
			return p
		}
		value = true
		path = parentPath(path)
	}
	return position{1, 1}
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func (l *locator) pos(off int) position {
	if off > len(l.src) {
		off = len(l.src)
	}
	start := strings.LastIndexByte(l.src[:off], '\n') + 1
	// The scanner asks in file order: count only the newlines since the
	// last answer.
	if start < l.lineStart {
		l.line, l.lineStart = 0, 0
	}
	l.line += strings.Count(l.src[l.lineStart:start], "\n")
	l.lineStart = start
	return position{l.line + 1, off - start + 1}
}

func (l *locator) peek(k int) byte {
	if l.i+k < len(l.src) {
		return l.src[l.i+k]
	}
	return 0
}

func (l *locator) eof() bool { return l.i >= len(l.src) }

// skipSpace skips blanks, and newlines and comments when nl is set.
func (l *locator) skipSpace(nl bool) {
	for !l.eof() {
		switch c := l.src[l.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			l.i++
		case c == '\n' && nl:
			l.i++
		case c == '#' && nl:
			l.skipLine()
		default:
			return
		}
	}
}

func (l *locator) skipLine() {
	for !l.eof() && l.src[l.i] != '\n' {
		l.i++
	}
}

func (l *locator) scan() {
	prefix := ""
	for !l.eof() {
		l.skipSpace(true)
		if l.eof() {
			return
		}
		start := l.i
		switch l.src[l.i] {
		case '[':
			array := l.peek(1) == '['
			if array {
				l.i += 2
			} else {
				l.i++
			}
			parts := l.keyParts()
			prefix = l.resolve(parts, array)
			if _, ok := l.keys[prefix]; !ok {
				l.keys[prefix] = l.pos(start)
			}
			l.skipLine()
		default:
			parts := l.keyParts()
			if len(parts) == 0 {
				l.skipLine() // cannot happen in valid TOML; make progress
				continue
			}
			path := joinPath(prefix, strings.Join(parts, "."))
			l.keys[path] = l.pos(start)
			l.skipSpace(false)
			if l.peek(0) == '=' {
				l.i++
				l.skipSpace(false)
				l.parseValue(path)
			}
			l.skipSpace(false)
			if l.peek(0) == '#' {
				l.skipLine()
			}
			if !l.eof() && l.src[l.i] != '\n' {
				l.skipLine()
			}
		}
		if l.i == start {
			l.i++
		}
	}
}

// resolve turns a header's key parts into a path, indexing arrays of tables.
func (l *locator) resolve(parts []string, array bool) string {
	path := ""
	for n, p := range parts {
		path = joinPath(path, p)
		if array && n == len(parts)-1 {
			idx := l.arrays[path]
			l.arrays[path] = idx + 1
			return path + "[" + strconv.Itoa(idx) + "]"
		}
		if c, ok := l.arrays[path]; ok {
			path += "[" + strconv.Itoa(c-1) + "]"
		}
	}
	return path
}

// keyParts reads a dotted key (bare or quoted parts) and stops before '=',
// ']' or the end of the line.
func (l *locator) keyParts() []string {
	var parts []string
	for {
		l.skipSpace(false)
		if l.eof() {
			return parts
		}
		switch c := l.src[l.i]; {
		case c == '"' || c == '\'':
			parts = append(parts, l.quoted())
		case isBare(c):
			s := l.i
			for !l.eof() && isBare(l.src[l.i]) {
				l.i++
			}
			parts = append(parts, l.src[s:l.i])
		default:
			return parts
		}
		l.skipSpace(false)
		if l.peek(0) != '.' {
			return parts
		}
		l.i++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// quoted reads a one-line quoted string and returns its raw contents
// (escapes left as written: good enough to name a key).
func (l *locator) quoted() string {
	q := l.src[l.i]
	l.i++
	s := l.i
	for !l.eof() && l.src[l.i] != q && l.src[l.i] != '\n' {
		if q == '"' && l.src[l.i] == '\\' {
			l.i++
		}
		l.i++
	}
	if l.i > len(l.src) {
		l.i = len(l.src)
	}
	out := l.src[s:l.i]
	if !l.eof() && l.src[l.i] == q {
		l.i++
	}
	return out
}

func (l *locator) parseValue(path string) {
	l.values[path] = l.pos(l.i)
	if l.eof() {
		return
	}
	switch c := l.src[l.i]; c {
	case '[':
		l.i++
		for n := 0; ; n++ {
			l.skipSpace(true)
			if l.eof() {
				return
			}
			if l.src[l.i] == ']' {
				l.i++
				return
			}
			before := l.i
			l.parseValue(path + "[" + strconv.Itoa(n) + "]")
			l.skipSpace(true)
			if l.peek(0) == ',' {
				l.i++
			}
			if l.i == before {
				l.i++
			}
		}
	case '{':
		l.i++
		for {
			l.skipSpace(true)
			if l.eof() {
				return
			}
			if l.src[l.i] == '}' {
				l.i++
				return
			}
			before := l.i
			parts := l.keyParts()
			sub := joinPath(path, strings.Join(parts, "."))
			l.keys[sub] = l.pos(before)
			l.skipSpace(false)
			if l.peek(0) == '=' {
				l.i++
				l.skipSpace(false)
				l.parseValue(sub)
			}
			l.skipSpace(true)
			if l.peek(0) == ',' {
				l.i++
			}
			if l.i == before {
				l.i++
			}
		}
	case '"', '\'':
		q := string([]byte{c, c, c})
		if strings.HasPrefix(l.src[l.i:], q) {
			l.i += 3
			for !l.eof() && !strings.HasPrefix(l.src[l.i:], q) {
				if c == '"' && l.src[l.i] == '\\' {
					l.i++
				}
				l.i++
			}
			l.i += 3
			// A multi-line string may end in up to two more quotes.
			for n := 0; n < 2 && l.peek(0) == c; n++ {
				l.i++
			}
			if l.i > len(l.src) {
				l.i = len(l.src)
			}
			return
		}
		l.quoted()
	default:
		for !l.eof() && !strings.ContainsRune(",]}#\n \t\r", rune(l.src[l.i])) {
			l.i++
		}
	}
}
