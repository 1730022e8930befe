//go:build race

package appliance

// raceEnabled: the race detector slows this package's tests several
// times, so the big transfers shrink under it.
const raceEnabled = true
