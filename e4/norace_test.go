//go:build !race

package e4

const raceEnabled = false
