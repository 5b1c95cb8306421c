package policy

// KeyMatches lists the match string of every [[key]] section, in file
// order (duplicates kept). Tools compare them with the keys a person
// actually has, so that a typo in a match does not silently send a key
// to [defaults].
func (p *Policy) KeyMatches() []string {
	out := make([]string, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.match
	}
	return out
}
