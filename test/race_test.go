//go:build race

package test

// raceEnabled builds the agent under test with the race detector when
// the tests themselves run with -race.
const raceEnabled = true
