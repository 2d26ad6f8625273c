//go:build race

package e4

// raceEnabled: the race detector makes sync.Pool drop objects at random, so
// allocation counts are meaningless under it.
const raceEnabled = true
