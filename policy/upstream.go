package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// upstreamFields reads the top-level upstream and upstream_timeout: the
// agents whose keys safe-agent fronts (issue 16). A socket path naming an
// unset variable is a warning, not an error: the same file serves
// machines where that agent does not run.
func (c *checker) upstreamFields(raw map[string]any, p *Policy) {
	if v, ok := raw["upstream"]; ok {
		for _, s := range c.stringList("upstream", v, func(path, s string) bool {
			if strings.TrimSpace(s) == "" {
				c.bad(path, "upstream has an empty socket path")
				return false
			}
			return true
		}) {
			path, err := expandSocket(s, filepath.Dir(c.file))
			if err != nil {
				p.warnings = append(p.warnings, fmt.Sprintf("upstream %q ignored: %v", s, err))
				continue
			}
			if !slices.Contains(p.upstreams, path) {
				p.upstreams = append(p.upstreams, path)
			}
		}
	}
	if v, ok := raw["upstream_timeout"]; ok {
		if d, ok := c.duration("upstream_timeout", v); ok {
			if d <= 0 {
				c.bad("upstream_timeout", "upstream_timeout must be longer than 0s, like \"30s\"")
			}
			p.upstreamTimeout = d
		}
	}
}

// expandSocket expands $VAR / ${VAR} and then ~/ in an upstream socket
// path; relative paths are relative to the policy file's directory.
func expandSocket(s, base string) (string, error) {
	var unset []string
	s = os.Expand(s, func(name string) string {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			unset = append(unset, "$"+name)
		}
		return v
	})
	if len(unset) > 0 {
		return "", fmt.Errorf("%s not set", strings.Join(unset, ", "))
	}
	return expandPath(s, base)
}
