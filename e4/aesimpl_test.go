package e4

import (
	"testing"

	"github.com/e4-iot/e4kit/e4/internal/aesblock"
)

// forEachAES runs f once per AES implementation this machine has
// (assembly and pure Go on amd64 and arm64), so that the E4 vectors cover
// both paths of the crypto core.
func forEachAES(t *testing.T, f func(t *testing.T)) {
	for _, impl := range aesblock.Implementations() {
		t.Run(impl.String(), func(t *testing.T) {
			prev := aesblock.SetImplementation(impl)
			defer aesblock.SetImplementation(prev)
			f(t)
		})
	}
}
