// Package version tells which build of E4kit is running, from the build
// information the Go toolchain records in every binary.
package version

import (
	"runtime/debug"
	"strings"
)

// String returns the module version of the build ("v1.2.0" for a
// tagged release installed with go install), or "devel" followed by the
// commit and its date for a build from a checkout, with "+dirty" when the
// checkout had uncommitted changes. Never empty.
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return fromBuildInfo(info)
}

func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	settings := make(map[string]string)
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	parts := []string{"devel"}
	if rev := settings["vcs.revision"]; rev != "" {
		parts = append(parts, rev[:min(len(rev), 12)])
	}
	if at := settings["vcs.time"]; at != "" {
		parts = append(parts, at)
	}
	v := strings.Join(parts, " ")
	if settings["vcs.modified"] == "true" {
		v += "+dirty"
	}
	return v
}
