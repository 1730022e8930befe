//go:build !linux

package procnet

import "context"

func checkNetns() error {
	return ErrNetnsUnavailable
}

func (n *Net) setupNetwork(context.Context, bool) error { return ErrNetnsUnavailable }

func removeNetwork(context.Context, Manifest) error { return ErrNetnsUnavailable }

func cutOff(context.Context, Manifest, Partition) error { return ErrNetnsUnavailable }

func rejoin(context.Context, Manifest, Partition, []string, bool) error {
	return ErrNetnsUnavailable
}
