package policy

import (
	"strings"
	"testing"
	"time"
)

func TestRefusalMemorySetting(t *testing.T) {
	for _, tc := range []struct {
		text string
		want time.Duration
		err  string
	}{
		{"", DefaultRefusalMemory, ""},
		{`refusal_memory = "0s"`, 0, ""},
		{`refusal_memory = "30s"`, 30 * time.Second, ""},
		{`refusal_memory = "-1s"`, 0, `t.toml:1:18: refusal_memory must be between "0s" (off) and "10m"`},
		{`refusal_memory = "11m"`, 0, `t.toml:1:18: refusal_memory must be between "0s" (off) and "10m"`},
		{`refusal_memory = 10`, 0, `refusal_memory must be a duration in quotes`},
	} {
		p, err := Parse("t.toml", []byte(tc.text), nil)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.text, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if got := p.RefusalMemory(); got != tc.want {
			t.Errorf("%q: RefusalMemory() = %s, want %s", tc.text, got, tc.want)
		}
	}
	if got := Default().RefusalMemory(); got != DefaultRefusalMemory {
		t.Errorf("Default().RefusalMemory() = %s", got)
	}
}
