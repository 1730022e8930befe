//go:build !unix

package store

// lockFileName is unused where flock is missing; badger's own directory
// lock still refuses a second process.
const lockFileName = "spotmesh.lock"

type dirLock struct{}

func lockDir(string) (*dirLock, error) { return &dirLock{}, nil }

func (*dirLock) release() error { return nil }
