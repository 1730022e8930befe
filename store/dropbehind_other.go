//go:build !linux

package store

import "log/slog"

// dropBehind frees durable value-log pages on Linux (dropbehind_linux.go);
// elsewhere the page cache keeps them.
type dropBehind struct{}

type dropMark struct{}

func newDropBehind(string, int64, *slog.Logger) *dropBehind { return nil }

func (*dropBehind) mark(int64) []dropMark { return nil }
func (*dropBehind) unmap([]dropMark)      {}
func (*dropBehind) release([]dropMark)    {}
