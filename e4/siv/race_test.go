//go:build race

package siv

// raceEnabled is set when testing with -race, where sync.Pool deliberately
// drops objects and allocation counts are therefore meaningless.
const raceEnabled = true
