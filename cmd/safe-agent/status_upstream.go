package main

import (
	"fmt"
	"io"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/termtext"
)

// printUpstreams prints one line per upstream agent for `safe-agent status`.
func printUpstreams(w io.Writer, ups []agent.UpstreamStatus) {
	e := termtext.Escape
	for _, u := range ups {
		if u.Reachable {
			fmt.Fprintf(w, "upstream %s: reachable, %s\n", e(u.Socket), keyCount(u.Keys))
			continue
		}
		fmt.Fprintf(w, "upstream %s: unreachable (last error: %s)\n", e(u.Socket), e(orDash(u.LastError)))
	}
}

// checkUpstreams is one doctor check per upstream agent the running agent
// fronts.
func checkUpstreams(st *agent.Status) []checkResult {
	if st == nil {
		return nil
	}
	out := make([]checkResult, 0, len(st.Upstreams))
	for _, u := range st.Upstreams {
		r := checkResult{Name: "upstream"}
		if u.Reachable {
			r.Msg = fmt.Sprintf("%s reachable with %s", u.Socket, keyCount(u.Keys))
		} else {
			r.Status = checkWarn
			r.Msg = fmt.Sprintf("%s unreachable: %s; its keys are not offered", u.Socket, orDash(u.LastError))
			r.Fix = "start the agent that listens there, or correct the path (serve --upstream, upstream in the policy file); safe-agent tries it again at the next request, at most once a second"
		}
		out = append(out, r)
	}
	return out
}

func keyCount(n int) string {
	if n == 1 {
		return "1 key"
	}
	return fmt.Sprintf("%d keys", n)
}
