package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDueKeyOrder(t *testing.T) {
	times := []time.Time{
		time.Unix(-5, 0), time.Unix(0, 0), time.Unix(0, 1), t0, t0.Add(time.Nanosecond), t0.Add(time.Hour),
	}
	for i := 1; i < len(times); i++ {
		a, b := dueBytes(times[i-1]), dueBytes(times[i])
		if string(a[:]) >= string(b[:]) {
			t.Errorf("due key of %v does not sort before %v", times[i-1], times[i])
		}
	}
	for _, tm := range times {
		k := jobDueKey(dueBytes(tm), "kind", "id/with/slashes")
		due, kind, id, ok := parseJobDueKey(k)
		if !ok || !due.Equal(tm) || kind != "kind" || id != "id/with/slashes" {
			t.Errorf("parse(%q) = %v %q %q %v", k, due, kind, id, ok)
		}
	}
}

func TestScheduleCancelJob(t *testing.T) {
	tests := []struct {
		name  string
		steps func(tx *Txn) error
		want  *Job // nil: ErrNotFound
		index int  // due-index entries
	}{
		{"schedule", func(tx *Txn) error {
			return tx.Schedule(Job{Kind: "k", ID: "1", Due: t0, Data: []byte("d")})
		}, &Job{Kind: "k", ID: "1", Due: t0, Data: []byte("d")}, 1},
		{"replace moves the due entry", func(tx *Txn) error {
			if err := tx.Schedule(Job{Kind: "k", ID: "1", Due: t0, Data: []byte("a")}); err != nil {
				return err
			}
			return tx.Schedule(Job{Kind: "k", ID: "1", Due: t0.Add(time.Hour), Data: []byte("b")})
		}, &Job{Kind: "k", ID: "1", Due: t0.Add(time.Hour), Data: []byte("b")}, 1},
		{"cancel", func(tx *Txn) error {
			if err := tx.Schedule(Job{Kind: "k", ID: "1", Due: t0}); err != nil {
				return err
			}
			return tx.Cancel("k", "1")
		}, nil, 0},
		{"cancel missing", func(tx *Txn) error { return tx.Cancel("k", "1") }, nil, 0},
		{"zero due is the epoch", func(tx *Txn) error {
			return tx.Schedule(Job{Kind: "k", ID: "1"})
		}, &Job{Kind: "k", ID: "1", Due: time.Unix(0, 0)}, 1},
		{"kinds are apart", func(tx *Txn) error {
			if err := tx.Schedule(Job{Kind: "k", ID: "1", Due: t0}); err != nil {
				return err
			}
			if err := tx.Schedule(Job{Kind: "other", ID: "1", Due: t0}); err != nil {
				return err
			}
			return tx.Cancel("other", "1")
		}, &Job{Kind: "k", ID: "1", Due: t0}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTest(t, testOptions(t))
			if err := db.Update(tt.steps); err != nil {
				t.Fatal(err)
			}
			err := db.View(func(tx *Txn) error {
				j, err := tx.Job("k", "1")
				if tt.want == nil {
					if !errors.Is(err, ErrNotFound) {
						return fmt.Errorf("Job = %+v, %v; want ErrNotFound", j, err)
					}
				} else if err != nil || !j.Due.Equal(tt.want.Due) || string(j.Data) != string(tt.want.Data) ||
					j.Kind != tt.want.Kind || j.ID != tt.want.ID {
					return fmt.Errorf("Job = %+v, %v; want %+v", j, err, *tt.want)
				}
				n := 0
				err = tx.Iterate(jobDuePrefix, func(k, _ []byte) error {
					if _, kind, _, _ := parseJobDueKey(k); kind == "k" {
						n++
					}
					return nil
				})
				if n != tt.index {
					return fmt.Errorf("%d due-index entries, want %d", n, tt.index)
				}
				return err
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
}

func TestScheduleInvalid(t *testing.T) {
	db := openTest(t, testOptions(t))
	for _, j := range []Job{{Kind: "", ID: "1"}, {Kind: "a/b", ID: "1"}, {Kind: "k", ID: ""}} {
		err := db.Update(func(tx *Txn) error { return tx.Schedule(j) })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Schedule(%+v) = %v, want ErrInvalid", j, err)
		}
	}
}

// TestScheduleWithState: the job and the state that causes it commit
// together or not at all.
func TestScheduleWithState(t *testing.T) {
	db := openTest(t, testOptions(t))
	boom := errors.New("boom")
	err := db.Update(func(tx *Txn) error {
		if err := tx.Set(Key("lease", "L1"), []byte("active")); err != nil {
			return err
		}
		if err := tx.Schedule(Job{Kind: "expire", ID: "L1", Due: t0}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Txn) error {
		if _, err := tx.Job("expire", "L1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("job of a failed Update is stored: %v", err)
		}
		return nil
	})
	err = db.Update(func(tx *Txn) error {
		if err := tx.Set(Key("lease", "L1"), []byte("active")); err != nil {
			return err
		}
		return tx.Schedule(Job{Kind: "expire", ID: "L1", Due: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Txn) error {
		if _, err := tx.Job("expire", "L1"); err != nil {
			t.Errorf("job: %v", err)
		}
		if _, err := tx.Get(Key("lease", "L1")); err != nil {
			t.Errorf("state: %v", err)
		}
		return nil
	})
}

// queueTest is a DB on a mock clock with a queue whose results reach the
// test through finished.
type queueTest struct {
	db       *DB
	clk      *clock.Mock
	q        *Queue
	finished chan string // "kind/id: <nil or error>"
}

func newQueueTest(t *testing.T, qopts QueueOptions) *queueTest {
	clk := clock.NewMock()
	clk.Set(t0)
	opts := testOptions(t)
	opts.Clock = clk
	qt := &queueTest{db: openTest(t, opts), clk: clk, finished: make(chan string, 100)}
	qt.q = NewQueue(qt.db, qopts)
	qt.q.hookFinished = func(kind, id string, err error) {
		qt.finished <- fmt.Sprintf("%s/%s: %v", kind, id, err)
	}
	t.Cleanup(func() { qt.q.Close() })
	return qt
}

func (qt *queueTest) schedule(t *testing.T, j Job) {
	t.Helper()
	if err := qt.db.Update(func(tx *Txn) error { return tx.Schedule(j) }); err != nil {
		t.Fatal(err)
	}
}

func (qt *queueTest) start(t *testing.T) {
	t.Helper()
	if err := qt.q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// ran is what a handler saw.
type ran struct {
	id  string
	now time.Time
	due time.Time
}

// TestQueueMockClock: advancing the mock clock runs each job at its due
// time, in due order, and not before.
func TestQueueMockClock(t *testing.T) {
	qt := newQueueTest(t, QueueOptions{})
	runs := make(chan ran, 10)
	qt.q.Handle("tick", func(ctx context.Context, j Job) error {
		runs <- ran{j.ID, qt.clk.Now(), j.Due}
		return nil
	})
	for i, id := range []string{"c", "a", "b"} { // stored out of order
		_ = i
		due := map[string]time.Duration{"a": 10 * time.Minute, "b": 20 * time.Minute, "c": 2 * time.Hour}[id]
		qt.schedule(t, Job{Kind: "tick", ID: id, Due: t0.Add(due)})
	}
	qt.start(t)
	steps := []struct {
		advance time.Duration
		want    string // "" none
	}{
		{5 * time.Minute, ""},
		{5 * time.Minute, "a"}, // exactly a's due time
		{9 * time.Minute, ""},
		{time.Minute, "b"},
		{2 * time.Hour, "c"}, // far past: runs once the clock passes it
	}
	for _, s := range steps {
		qt.clk.Add(s.advance)
		if s.want == "" {
			continue
		}
		r := within(t, runs, "job "+s.want)
		if r.id != s.want {
			t.Fatalf("ran %s at %v, want %s", r.id, r.now, s.want)
		}
		if r.now.Before(r.due) {
			t.Fatalf("job %s ran at %v, before its due time %v", r.id, r.now, r.due)
		}
		within(t, qt.finished, "job "+s.want+" finished")
	}
	select {
	case r := <-runs:
		t.Fatalf("unexpected run of %s", r.id)
	default:
	}
	if n := qt.q.Pending(); n != 0 {
		t.Fatalf("Pending = %d after all jobs succeeded", n)
	}
}

// TestQueueWakesOnEarlierJob: a queue sleeping until a far job runs a job
// scheduled for now at once, without the clock moving.
func TestQueueWakesOnEarlierJob(t *testing.T) {
	qt := newQueueTest(t, QueueOptions{})
	runs := make(chan string, 10)
	qt.q.Handle("k", func(ctx context.Context, j Job) error { runs <- j.ID; return nil })
	qt.schedule(t, Job{Kind: "k", ID: "far", Due: t0.Add(24 * time.Hour)})
	qt.start(t)
	qt.schedule(t, Job{Kind: "k", ID: "now", Due: t0})
	if id := within(t, runs, "the earlier job"); id != "now" {
		t.Fatalf("ran %s, want now", id)
	}
	if n := qt.q.Pending(); n != 1 {
		t.Fatalf("Pending = %d, want 1 (far)", n)
	}
}

// TestQueueRescheduleKeepsJob: a handler that schedules its own job again
// for later keeps it; it runs again then and is deleted when it does not.
func TestQueueRescheduleKeepsJob(t *testing.T) {
	qt := newQueueTest(t, QueueOptions{})
	var calls atomic.Int32
	qt.q.Handle("renew", func(ctx context.Context, j Job) error {
		if calls.Add(1) == 1 {
			return qt.db.Update(func(tx *Txn) error {
				return tx.Schedule(Job{Kind: j.Kind, ID: j.ID, Due: j.Due.Add(time.Hour), Data: []byte("again")})
			})
		}
		if string(j.Data) != "again" {
			return fmt.Errorf("second run got data %q", j.Data)
		}
		return nil
	})
	qt.schedule(t, Job{Kind: "renew", ID: "r", Due: t0})
	qt.start(t)
	if got := within(t, qt.finished, "first run"); got != "renew/r: <nil>" {
		t.Fatal(got)
	}
	var j Job
	err := qt.db.View(func(tx *Txn) error { var err error; j, err = tx.Job("renew", "r"); return err })
	if err != nil {
		t.Fatalf("job rescheduled by its handler was deleted: %v", err)
	}
	if !j.Due.Equal(t0.Add(time.Hour)) {
		t.Fatalf("job due %v, want %v", j.Due, t0.Add(time.Hour))
	}
	qt.clk.Add(time.Hour)
	if got := within(t, qt.finished, "second run"); got != "renew/r: <nil>" {
		t.Fatal(got)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d calls, want 2", calls.Load())
	}
	if n := qt.q.Pending(); n != 0 {
		t.Fatalf("Pending = %d, want 0", n)
	}
}

// TestQueueRescheduleSameTime: scheduling the job again with the same Due
// and Data still counts as a new schedule: it runs again.
func TestQueueRescheduleSameTime(t *testing.T) {
	qt := newQueueTest(t, QueueOptions{})
	var calls atomic.Int32
	qt.q.Handle("k", func(ctx context.Context, j Job) error {
		if calls.Add(1) == 1 {
			return qt.db.Update(func(tx *Txn) error { return tx.Schedule(j) })
		}
		return nil
	})
	qt.schedule(t, Job{Kind: "k", ID: "x", Due: t0})
	qt.start(t)
	within(t, qt.finished, "first run")
	within(t, qt.finished, "second run")
	if calls.Load() != 2 || qt.q.Pending() != 0 {
		t.Fatalf("calls %d, pending %d; want 2, 0", calls.Load(), qt.q.Pending())
	}
}

func TestQueueCancel(t *testing.T) {
	qt := newQueueTest(t, QueueOptions{})
	runs := make(chan string, 10)
	qt.q.Handle("k", func(ctx context.Context, j Job) error { runs <- j.ID; return nil })
	qt.schedule(t, Job{Kind: "k", ID: "cancelled", Due: t0.Add(time.Minute)})
	qt.schedule(t, Job{Kind: "k", ID: "kept", Due: t0.Add(2 * time.Minute)})
	qt.start(t)
	if err := qt.db.Update(func(tx *Txn) error { return tx.Cancel("k", "cancelled") }); err != nil {
		t.Fatal(err)
	}
	qt.clk.Add(2 * time.Minute)
	if id := within(t, runs, "kept"); id != "kept" {
		t.Fatalf("ran %s, want kept (the other was cancelled)", id)
	}
	within(t, qt.finished, "kept finished")
	select {
	case id := <-runs:
		t.Fatalf("ran %s", id)
	default:
	}
}

// TestQueueRetry: a failing job is retried after 1s, 2s, 4s, 4s (capped),
// keeps its data, and is deleted once it succeeds.
func TestQueueRetry(t *testing.T) {
	qt := newQueueTest(t, QueueOptions{MinBackoff: time.Second, MaxBackoff: 4 * time.Second})
	runs := make(chan time.Time, 10)
	var calls atomic.Int32
	qt.q.Handle("flaky", func(ctx context.Context, j Job) error {
		runs <- qt.clk.Now()
		if string(j.Data) != "payload" {
			return fmt.Errorf("data %q", j.Data)
		}
		if calls.Add(1) <= 4 {
			return errors.New("not yet")
		}
		return nil
	})
	qt.schedule(t, Job{Kind: "flaky", ID: "f", Due: t0, Data: []byte("payload")})
	qt.start(t)
	at := within(t, runs, "first try")
	if !at.Equal(t0) {
		t.Fatalf("first try at %v, want %v", at, t0)
	}
	for _, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if got := within(t, qt.finished, "failure"); got != "flaky/f: not yet" {
			t.Fatal(got)
		}
		select {
		case r := <-runs:
			t.Fatalf("retried at %v without waiting", r)
		default:
		}
		prev := qt.clk.Now()
		qt.clk.Add(backoff)
		at := within(t, runs, "retry")
		if got := at.Sub(prev); got != backoff {
			t.Fatalf("retried after %v, want %v", got, backoff)
		}
	}
	if got := within(t, qt.finished, "success"); got != "flaky/f: <nil>" {
		t.Fatal(got)
	}
	if n := qt.q.Pending(); n != 0 {
		t.Fatalf("Pending = %d after success", n)
	}
}

func TestQueuePanicIsAnError(t *testing.T) {
	qt := newQueueTest(t, QueueOptions{})
	qt.q.Handle("p", func(ctx context.Context, j Job) error { panic("oops") })
	qt.schedule(t, Job{Kind: "p", ID: "1", Due: t0})
	qt.start(t)
	got := within(t, qt.finished, "panicking job")
	if want := "p/1: handler panicked: oops"; len(got) < len(want) || got[:len(want)] != want {
		t.Fatalf("finished %q, want %q...", got, want)
	}
	if qt.q.Pending() != 1 {
		t.Fatal("a job whose handler panicked was deleted")
	}
}

// TestQueueRunsAfterRestart: jobs that came due while the node was down
// run right after Start, on a real restart of the same directory.
func TestQueueRunsAfterRestart(t *testing.T) {
	clk := clock.NewMock()
	clk.Set(t0)
	opts := testOptions(t)
	opts.Clock = clk
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *Txn) error {
		if err := tx.Set(Key("lease", "L1"), []byte("active")); err != nil {
			return err
		}
		if err := tx.Schedule(Job{Kind: "expire", ID: "L1", Due: t0.Add(time.Hour), Data: []byte("L1")}); err != nil {
			return err
		}
		return tx.Schedule(Job{Kind: "expire", ID: "L2", Due: t0.Add(48 * time.Hour)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Add(2 * time.Hour) // the node was down
	db = openTest(t, opts)
	q := NewQueue(db, QueueOptions{})
	runs := make(chan Job, 10)
	q.Handle("expire", func(ctx context.Context, j Job) error {
		runs <- j
		return db.Update(func(tx *Txn) error { return tx.Set(Key("lease", j.ID), []byte("expired")) })
	})
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	j := within(t, runs, "overdue job after restart")
	if j.ID != "L1" || string(j.Data) != "L1" || !j.Due.Equal(t0.Add(time.Hour)) {
		t.Fatalf("ran %+v", j)
	}
	select {
	case j := <-runs:
		t.Fatalf("ran %s, which is not due", j.ID)
	default:
	}
}

func TestQueueStartClose(t *testing.T) {
	db := openTest(t, testOptions(t))
	q := NewQueue(db, QueueOptions{})
	q.Handle("k", func(ctx context.Context, j Job) error {
		<-ctx.Done() // a long handler: Close cancels it and waits
		return ctx.Err()
	})
	started := make(chan struct{})
	q2 := NewQueue(db, QueueOptions{})
	q2.Handle("k", func(ctx context.Context, j Job) error { close(started); <-ctx.Done(); return ctx.Err() })
	if err := q2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := q2.Start(t.Context()); !errors.Is(err, ErrInvalid) {
		t.Errorf("second Start = %v", err)
	}
	if err := db.Update(func(tx *Txn) error { return tx.Schedule(Job{Kind: "k", ID: "1"}) }); err != nil {
		t.Fatal(err)
	}
	within(t, started, "handler start")
	if err := q2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil { // never started
		t.Fatal(err)
	}
	if err := q.Start(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v", err)
	}
	if bad := NewQueue(db, QueueOptions{Workers: -1}); bad.Start(t.Context()) == nil {
		bad.Close()
		t.Error("Start with Workers -1 succeeded")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Handle after Start did not panic")
			}
		}()
		q3 := NewQueue(db, QueueOptions{})
		defer q3.Close()
		if err := q3.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		q3.Handle("late", func(context.Context, Job) error { return nil })
	}()
}
