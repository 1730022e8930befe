//go:build !linux

package procnet

import (
	"syscall"
	"time"
)

func readStat(int) (procStat, error)  { return procStat{}, ErrUnsupported }
func readCmdline(int) ([]byte, error) { return nil, ErrUnsupported }
func rssOf(int) uint64                { return 0 }
func reap(int)                        {}

func spawn(string, []string, string, string, []string) (int, uint64, error) {
	return 0, 0, ErrUnsupported
}

func signalIf(int, syscall.Signal, func() error) error { return ErrUnsupported }

func killGroup(int) error { return ErrUnsupported }

func lockDir(string, time.Duration) (func(), error) { return nil, ErrUnsupported }

const supported = false
