package api

import (
	"testing"

	"github.com/e4-iot/e4kit/e4"
)

// TestResolveClientInSuite: a name resolves to the id from name of the
// deployment's suite; an id is an id in every suite.
func TestResolveClientInSuite(t *testing.T) {
	if id, err := ResolveClientIn(e4.Fast, "pump-1"); err != nil || id != e4.Fast.IDFromName("pump-1") || id == e4.IDFromName("pump-1") {
		t.Errorf("fast name: %v, %v", id, err)
	}
	hexID := e4.IDFromName("x").String()
	if id, err := ResolveClientIn(e4.Fast, hexID); err != nil || id.String() != hexID {
		t.Errorf("hex id under fast: %v, %v", id, err)
	}
}
