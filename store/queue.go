package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
)

// Handler runs a due job. Returning nil deletes the job, unless it was
// scheduled again meanwhile (by the handler itself, to run again later, or
// by anyone else). Returning an error keeps it and retries with backoff.
// A job runs at least once: after a crash a job whose handler finished but
// whose deletion was not yet on disk runs again, so handlers must be
// idempotent. ctx is cancelled when the queue closes.
type Handler func(ctx context.Context, j Job) error

// QueueOptions configures a Queue. Zero fields take the defaults of
// DefaultQueueOptions.
type QueueOptions struct {
	// Clock decides when jobs are due. nil: the DB's Options.Clock.
	Clock clock.Clock
	// Logger: nil means the DB's logger.
	Logger *slog.Logger
	// Workers is the most handlers that run at once (default 4).
	Workers int
	// MinBackoff is the wait before the first retry of a failed job;
	// each further failure doubles it up to MaxBackoff (defaults 1s, 5m).
	MinBackoff, MaxBackoff time.Duration
	// MaxWait is the longest the queue sleeps before looking at the due
	// index again, in case the wall clock jumped (default 1m).
	MaxWait time.Duration
}

// DefaultQueueOptions returns the defaults.
func DefaultQueueOptions() QueueOptions {
	return QueueOptions{
		Workers:    4,
		MinBackoff: time.Second,
		MaxBackoff: 5 * time.Minute,
		MaxWait:    time.Minute,
	}
}

// Validate names the first bad field.
func (o QueueOptions) Validate() error {
	switch {
	case o.Workers < 0:
		return fmt.Errorf("queue options: Workers %d: want 1 or more (0 for the default): %w", o.Workers, ErrInvalid)
	case o.MinBackoff < 0, o.MaxBackoff < 0, o.MaxWait < 0:
		return fmt.Errorf("queue options: MinBackoff/MaxBackoff/MaxWait: want positive durations (0 for the default): %w", ErrInvalid)
	case o.MaxBackoff != 0 && o.MinBackoff > o.MaxBackoff:
		return fmt.Errorf("queue options: MinBackoff %v is above MaxBackoff %v: %w", o.MinBackoff, o.MaxBackoff, ErrInvalid)
	}
	return nil
}

func (o QueueOptions) withDefaults(db *DB) QueueOptions {
	d := DefaultQueueOptions()
	if o.Clock == nil {
		o.Clock = db.clock
	}
	if o.Logger == nil {
		o.Logger = db.log
	}
	if o.Workers == 0 {
		o.Workers = d.Workers
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = d.MinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(d.MaxBackoff, o.MinBackoff)
	}
	if o.MaxWait == 0 {
		o.MaxWait = d.MaxWait
	}
	return o
}

// Queue runs the jobs stored in a DB when they are due: the market's cron.
// Register handlers with Handle, then Start; Close before closing the DB.
type Queue struct {
	db       *DB
	opts     QueueOptions
	optsErr  error
	handlers map[string]Handler // written before Start only

	wake chan struct{}  // buffered 1: a job was scheduled
	done chan runResult // buffered Workers: a handler finished

	mu      sync.Mutex // guards started, closed and cancel
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the loop and the handlers

	// hookFinished, when set by a test before Start, is called by the loop
	// after it recorded a handler's result.
	hookFinished func(kind, id string, err error)
}

type jobName struct{ kind, id string }

type runResult struct {
	name jobName
	raw  []byte // the stored value that ran
	err  error
}

// retryState is the backoff of a job whose handler failed. It lives in
// memory only: after a restart, failed jobs are tried again at once.
type retryState struct {
	raw     []byte // the stored value that failed; a new Schedule resets the backoff
	attempt int
	at      time.Time
}

// NewQueue returns a queue over db's jobs. Options are checked by Start.
func NewQueue(db *DB, opts QueueOptions) *Queue {
	q := &Queue{
		db:       db,
		optsErr:  opts.Validate(),
		opts:     opts.withDefaults(db),
		handlers: make(map[string]Handler),
		wake:     make(chan struct{}, 1),
	}
	q.done = make(chan runResult, max(q.opts.Workers, 1))
	return q
}

// Handle sets the handler of a job kind. Call it before Start; it panics
// afterwards, or when kind already has a handler.
func (q *Queue) Handle(kind string, h Handler) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		panic(fmt.Sprintf("store: Queue.Handle(%q) after Start", kind))
	}
	if _, dup := q.handlers[kind]; dup {
		panic(fmt.Sprintf("store: Queue.Handle(%q): kind already has a handler", kind))
	}
	if err := validJobName(kind, "x"); err != nil || h == nil {
		panic(fmt.Sprintf("store: Queue.Handle(%q): want a kind without '/' and a handler", kind))
	}
	q.handlers[kind] = h
}

// Start runs the queue until ctx is done or Close. Jobs that came due while
// the node was down run right away.
func (q *Queue) Start(ctx context.Context) error {
	if q.optsErr != nil {
		return fmt.Errorf("store: queue: %w", q.optsErr)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("store: queue start: %w", ErrClosed)
	}
	if q.started {
		return fmt.Errorf("store: queue start: already started: %w", ErrInvalid)
	}
	q.started = true
	ctx, q.cancel = context.WithCancel(ctx)
	q.db.addListener(q.wake)
	q.wg.Add(1)
	go q.loop(ctx)
	return nil
}

// Close stops the queue: it cancels the handlers' context and waits for
// them. It is idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	cancel := q.cancel
	q.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	q.wg.Wait()
	q.db.removeListener(q.wake)
	return nil
}

// Pending returns the number of jobs stored (due or not, running or not).
func (q *Queue) Pending() int {
	n := 0
	err := q.db.View(func(t *Txn) error {
		return t.iterateKeys(jobPrefix, func([]byte) error { n++; return nil })
	})
	if err != nil {
		q.opts.Logger.Warn("store: queue: count jobs", "err", err)
	}
	return n
}

// loopState is owned by the loop goroutine.
type loopState struct {
	running map[jobName]bool
	retry   map[jobName]retryState
	warned  map[string]bool // kinds without a handler, logged once
}

func (q *Queue) loop(ctx context.Context) {
	defer q.wg.Done()
	st := loopState{
		running: make(map[jobName]bool),
		retry:   make(map[jobName]retryState),
		warned:  make(map[string]bool),
	}
	clk := q.opts.Clock
	for {
		// realStart is read before now, so that with a real clock the
		// clock's elapsed time never exceeds the real one (see below).
		realStart := time.Now()
		now := clk.Now()
		next, err := q.dispatch(ctx, &st, now)
		switch {
		case err == nil:
		case ctx.Err() != nil:
		case errors.Is(err, ErrClosed):
			// The DB was closed before the queue: wait for Close.
			if !st.warned[""] {
				st.warned[""] = true
				q.opts.Logger.Warn("store: queue: the database was closed before the queue; close queues first")
			}
			next = time.Time{}
		default:
			q.opts.Logger.Error("store: queue: read due jobs", "err", err)
			next = now.Add(q.opts.MinBackoff)
		}
		if ctx.Err() != nil {
			break
		}

		var timer *clock.Timer
		var timerC <-chan time.Time
		if !next.IsZero() {
			d := min(max(next.Sub(now), 0), q.opts.MaxWait)
			timer = clk.Timer(d)
			timerC = timer.C
			// The timer counts from the clock's time when it was made, not
			// from now. If the clock jumped meanwhile (a mock clock
			// advanced by a test, the wall clock stepped), the timer is
			// late: look at the due jobs again instead.
			if clk.Now().Sub(now) > time.Since(realStart)+time.Millisecond {
				timer.Stop()
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case r := <-q.done:
			q.finished(&st, r)
		case <-timerC:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			break
		}
	}
	// Wait for the handlers, which see ctx cancelled; their results go to
	// the buffered done channel and are dropped.
	for len(st.running) > 0 {
		r := <-q.done
		delete(st.running, r.name)
	}
}

// dispatch starts the due jobs that are not running or backing off, as
// many as there are free workers, and returns when it should look again
// (zero: only when woken).
func (q *Queue) dispatch(ctx context.Context, st *loopState, now time.Time) (time.Time, error) {
	var next time.Time
	earlier := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, r := range st.retry {
		if r.at.After(now) {
			earlier(r.at)
		}
	}
	seen := make(map[jobName]bool)
	cut := false // the scan stopped before the end of the due jobs
	type start struct {
		job Job
		raw []byte
	}
	var starts []start
	errStop := errors.New("stop")
	free := q.opts.Workers - len(st.running)
	err := q.db.View(func(t *Txn) error {
		return t.iterateKeys(jobDuePrefix, func(k []byte) error {
			due, kind, id, ok := parseJobDueKey(k)
			if !ok {
				return nil // not ours; cannot happen with this layout
			}
			if due.After(now) {
				earlier(due)
				return errStop
			}
			name := jobName{kind, id}
			seen[name] = true
			if st.running[name] {
				return nil
			}
			h := q.handlers[kind]
			if h == nil {
				if !st.warned[kind] {
					st.warned[kind] = true
					q.opts.Logger.Warn("store: queue: due job of a kind without handler; it stays stored", "kind", kind, "id", id)
				}
				return nil
			}
			raw, err := t.Get(jobKey(kind, id))
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if r, ok := st.retry[name]; ok {
				if !bytes.Equal(r.raw, raw) {
					delete(st.retry, name) // scheduled again: fresh start
				} else if r.at.After(now) {
					return nil
				}
			}
			if free == 0 {
				cut = true
				return errStop // woken when a worker is done
			}
			j, err := decodeJob(kind, id, raw)
			if err != nil {
				q.opts.Logger.Error("store: queue: skip unreadable job", "kind", kind, "id", id, "err", err)
				return nil
			}
			starts = append(starts, start{j, raw})
			free--
			return nil
		})
	})
	if err != nil && !errors.Is(err, errStop) {
		return next, err
	}
	if !cut {
		// Backoffs of jobs that are no longer due (cancelled, or scheduled
		// again for later) are over.
		for name, r := range st.retry {
			if !r.at.After(now) && !seen[name] {
				delete(st.retry, name)
			}
		}
	}
	for _, s := range starts {
		name := jobName{s.job.Kind, s.job.ID}
		st.running[name] = true
		q.wg.Add(1)
		go q.run(ctx, q.handlers[s.job.Kind], s.job, s.raw)
	}
	return next, nil
}

// run runs one handler and, on success, deletes the job unless it was
// scheduled again meanwhile.
func (q *Queue) run(ctx context.Context, h Handler, j Job, raw []byte) {
	defer q.wg.Done()
	err := callHandler(ctx, h, j)
	if err == nil {
		err = q.db.UpdateSoft(func(t *Txn) error {
			cur, err := t.Get(jobKey(j.Kind, j.ID))
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(cur, raw) {
				return nil // scheduled again meanwhile: keep it
			}
			return t.unschedule(j.Kind, j.ID)
		})
		if err != nil {
			err = fmt.Errorf("delete finished job: %w", err)
		}
	}
	q.done <- runResult{name: jobName{j.Kind, j.ID}, raw: raw, err: err}
}

func callHandler(ctx context.Context, h Handler, j Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return h(ctx, j)
}

// finished records a handler's result.
func (q *Queue) finished(st *loopState, r runResult) {
	if q.hookFinished != nil {
		defer q.hookFinished(r.name.kind, r.name.id, r.err)
	}
	delete(st.running, r.name)
	if r.err == nil {
		delete(st.retry, r.name)
		return
	}
	prev := st.retry[r.name]
	attempt := 1
	if bytes.Equal(prev.raw, r.raw) {
		attempt = prev.attempt + 1
	}
	backoff := q.opts.MinBackoff
	for i := 1; i < attempt && backoff < q.opts.MaxBackoff; i++ {
		backoff *= 2
	}
	backoff = min(backoff, q.opts.MaxBackoff)
	st.retry[r.name] = retryState{raw: r.raw, attempt: attempt, at: q.opts.Clock.Now().Add(backoff)}
	q.opts.Logger.Warn("store: queue: job failed, will retry",
		"kind", r.name.kind, "id", r.name.id, "attempt", attempt, "retry_in", backoff, "err", r.err)
}
