// Package span reads and writes the durations of rotation policies, as the
// CLI and the web interface show them: Go durations (90m, 36h) and whole
// days or weeks (7d, 1w).
package span

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Max is the longest duration a policy takes (100 years, as the API).
const Max = 100 * 365 * 24 * time.Hour

// ErrSyntax reports a text that is no duration, a negative one or one over
// Max.
var ErrSyntax = errors.New("span: want a duration such as 90m, 36h, 7d or 1w")

// units are the whole units Format prefers, largest first; d and w are
// also what Parse adds to Go's units.
var units = []struct {
	name string
	d    time.Duration
}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}}

// Parse reads a Go duration, or a whole number of days ("7d") or weeks
// ("1w").
func Parse(s string) (time.Duration, error) {
	for _, u := range units[:2] {
		if n, ok := strings.CutSuffix(s, u.name); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil || v < 0 || time.Duration(v) > Max/u.d {
				return 0, ErrSyntax
			}
			return time.Duration(v) * u.d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > Max {
		return 0, ErrSyntax
	}
	return d, nil
}

// Format writes d in its largest whole unit (1w, 36h, 90m), else as Go
// does; zero is "".
func Format(d time.Duration) string {
	if d == 0 {
		return ""
	}
	for _, u := range units {
		if d >= u.d && d%u.d == 0 {
			return fmt.Sprintf("%d%s", d/u.d, u.name)
		}
	}
	return d.String()
}
