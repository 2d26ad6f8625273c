package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"release", debug.BuildInfo{Main: debug.Module{Version: "v1.4.2"}}, "v1.4.2"},
		{"checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "ff3c6ca0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-07T03:00:00Z"}, {Key: "vcs.modified", Value: "false"},
		}}, "devel ff3c6ca01234 2026-12-07T03:00:00Z"},
		{"dirty", debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}}, "devel abc+dirty"},
		{"nothing", debug.BuildInfo{}, "devel"},
	}
	for _, tc := range tests {
		if got := fromBuildInfo(&tc.info); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
