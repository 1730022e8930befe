package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spotmesh/spotmesh/protocol"
)

// progress shows a long transfer on stderr: a bar redrawn in place (bytes,
// percentage, rate, time left) when stderr is a terminal or --progress
// asks for it, and in any case one line at the end with the size, time and
// rate. Its methods are safe for concurrent use: an import reports from
// the HTTP transport's goroutine.
type progress struct {
	w     io.Writer
	label string
	live  bool
	now   func() time.Time

	mu      sync.Mutex // guards the fields below
	start   time.Time
	done    uint64
	total   uint64
	drawn   bool      // a bar is on the line
	lastAt  time.Time // when the bar was last drawn
	samples []sample  // recent (time, done) pairs, for the rate
}

type sample struct {
	at   time.Time
	done uint64
}

const (
	// redrawEvery is the most often the bar is redrawn.
	redrawEvery = 100 * time.Millisecond
	// rateWindow is how far back the rate looks: long enough to smooth
	// bursts, short enough to follow a change of pace.
	rateWindow = 5 * time.Second
	// barWidth keeps the whole line within 80 columns.
	barWidth = 16
)

// newProgress starts a progress display on w. live draws the bar.
func newProgress(w io.Writer, label string, live bool, now func() time.Time) *progress {
	t := now()
	return &progress{w: w, label: label, live: live, now: now, start: t, samples: []sample{{t, 0}}}
}

// isTerminal reports whether w is a terminal that can redraw a line.
func isTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok || getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// update records that done of total bytes are through (total 0: unknown).
func (p *progress) update(done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.done, p.total = done, total
	if last := p.samples[len(p.samples)-1]; now.Sub(last.at) >= redrawEvery {
		p.samples = append(p.samples, sample{now, done})
		// Keep one sample older than the window, so the rate spans it.
		for len(p.samples) > 2 && now.Sub(p.samples[1].at) > rateWindow {
			p.samples = p.samples[1:]
		}
	}
	if p.live && (now.Sub(p.lastAt) >= redrawEvery || (total > 0 && done == total)) {
		p.lastAt = now
		p.drawn = true
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.line(now))
	}
}

// rate is the recent rate in bytes a second, 0 when unknown.
func (p *progress) rate(now time.Time) float64 {
	first := p.samples[0]
	dt := now.Sub(first.at).Seconds()
	if dt <= 0 || p.done < first.done {
		return 0
	}
	return float64(p.done-first.done) / dt
}

// line is the bar: label, bar and percentage when the total is known,
// bytes, rate and time left.
func (p *progress) line(now time.Time) string {
	var b strings.Builder
	b.WriteString(p.label)
	if p.total > 0 {
		frac := min(float64(p.done)/float64(p.total), 1)
		full := int(frac * barWidth)
		fmt.Fprintf(&b, "  [%s%s] %3d%%", strings.Repeat("=", full), strings.Repeat(" ", barWidth-full), int(frac*100))
		fmt.Fprintf(&b, "  %s/%s", protocol.FormatSize(p.done), protocol.FormatSize(p.total))
	} else {
		fmt.Fprintf(&b, "  %s", protocol.FormatSize(p.done))
	}
	r := p.rate(now)
	if r > 0 {
		fmt.Fprintf(&b, "  %s/s", protocol.FormatSize(uint64(r)))
		if p.total > p.done {
			fmt.Fprintf(&b, "  %s left", roundLeft(time.Duration(float64(p.total-p.done)/r*float64(time.Second))))
		}
	}
	return b.String()
}

// roundLeft prints a time left to a precision that does not flicker.
func roundLeft(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return protocol.FormatDuration(d.Round(time.Second))
	default:
		return protocol.FormatDuration(d.Round(time.Minute))
	}
}

// finish ends the display with one line: "<verb> <size> in <time> (<rate>)".
func (p *progress) finish(verb string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	d := p.now().Sub(p.start)
	line := fmt.Sprintf("%s %s in %s", verb, protocol.FormatSize(p.done), roundDuration(d))
	if d > 0 && p.done > 0 {
		line += fmt.Sprintf(" (%s/s)", protocol.FormatSize(uint64(float64(p.done)/d.Seconds())))
	}
	fmt.Fprintln(p.w, line)
}

// stop removes the bar, if any, so that an error prints on a clean line.
func (p *progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
}

func (p *progress) clearLocked() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// progressWriter counts the bytes written through it into a progress.
type progressWriter struct {
	w     io.Writer
	p     *progress
	n     uint64
	total uint64
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.n += uint64(n)
	pw.p.update(pw.n, pw.total)
	return n, err
}
