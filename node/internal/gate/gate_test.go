package gate

import (
	"errors"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	var g Gate
	if _, err := g.Host(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Host before Start: %v", err)
	}
	if err := g.Start(nil); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(nil); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if err := g.Enter(); err != nil {
		t.Fatal(err)
	}
	g.Shut()
	if err := g.Enter(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enter after Shut: %v", err)
	}
	if _, err := g.Host(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Host after Shut: %v", err)
	}
	done := make(chan bool)
	go func() { done <- g.Wait() }()
	select {
	case <-done:
		t.Fatal("Wait returned with work inside")
	case <-time.After(20 * time.Millisecond):
	}
	g.Leave()
	if started := <-done; !started {
		t.Fatal("Wait: want started")
	}
	if err := g.Start(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Shut: %v", err)
	}
}
