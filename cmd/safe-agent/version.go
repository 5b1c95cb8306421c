package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionText is what `safe-agent --version` prints: the module version,
// the VCS revision the binary was built from (and whether the tree had
// uncommitted changes), and the Go toolchain and experiments, which say
// whether runtime/secret erases signing's memory (GOEXPERIMENT=runtimesecret).
func versionText(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return "safe-agent (unknown version: no build information in the binary)\n"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	var b strings.Builder
	fmt.Fprintf(&b, "safe-agent %s\n", version)
	if rev := settings["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, "revision %s", rev)
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
		if settings["vcs.modified"] == "true" {
			b.WriteString(", modified: built with uncommitted changes")
		}
		b.WriteString("\n")
	} else {
		b.WriteString("revision unknown (built without VCS information: -buildvcs=false, or not from a git checkout)\n")
	}
	goVersion := bi.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	fmt.Fprintf(&b, "built with %s for %s/%s", goVersion, runtime.GOOS, runtime.GOARCH)
	if exp := settings["GOEXPERIMENT"]; exp != "" {
		fmt.Fprintf(&b, ", GOEXPERIMENT=%s", exp)
	}
	b.WriteString("\n")
	return b.String()
}

// buildVersion is versionText for this binary.
func buildVersion() string { return versionText(debug.ReadBuildInfo()) }
