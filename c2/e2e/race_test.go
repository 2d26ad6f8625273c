//go:build race

package e2e

// raceEnabled: the race detector slows the simulated fleet and the C2
// child several times over, so the fleet tests run a smaller fleet.
const raceEnabled = true
