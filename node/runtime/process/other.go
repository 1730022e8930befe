//go:build !linux

package process

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/spotmesh/spotmesh/node/runtime"
)

var _ runtime.Driver = (*Driver)(nil)

// Driver runs appliance bundles as local processes; it needs Linux, and
// New fails elsewhere.
type Driver struct{}

// New fails off Linux: the driver needs /proc, prlimit and cgroups.
func New(cfg Config, clk clock.Clock, log *slog.Logger) (*Driver, error) {
	return nil, fmt.Errorf("process driver: needs Linux: %w", runtime.ErrUnsupported)
}

func unsupported(op string) error { return fmt.Errorf("%s: %w", op, runtime.ErrUnsupported) }

// Name implements runtime.Driver.
func (d *Driver) Name() string { return "process" }

// Recover implements runtime.Driver.
func (d *Driver) Recover(context.Context) ([]runtime.Instance, error) {
	return nil, unsupported("recover")
}

// Capacity implements runtime.Driver.
func (d *Driver) Capacity(context.Context) (runtime.Capacity, error) {
	return runtime.Capacity{}, unsupported("capacity")
}

// Provision implements runtime.Driver.
func (d *Driver) Provision(context.Context, runtime.Spec) (runtime.Instance, error) {
	return runtime.Instance{}, unsupported("provision")
}

// Instance implements runtime.Driver.
func (d *Driver) Instance(context.Context, string) (runtime.Instance, error) {
	return runtime.Instance{}, unsupported("instance")
}

// List implements runtime.Driver.
func (d *Driver) List(context.Context) ([]runtime.Instance, error) { return nil, unsupported("list") }

// Terminate implements runtime.Driver.
func (d *Driver) Terminate(context.Context, string) (runtime.Instance, error) {
	return runtime.Instance{}, unsupported("terminate")
}

// Extend implements runtime.Driver.
func (d *Driver) Extend(context.Context, string, time.Time) (runtime.Instance, error) {
	return runtime.Instance{}, unsupported("extend")
}

// Close implements runtime.Driver.
func (d *Driver) Close() error { return nil }
