//go:build race

package main

// raceEnabled: the race detector slows the test process, so the
// end-to-end transfers shrink under it.
const raceEnabled = true
