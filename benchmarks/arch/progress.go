package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows what every target is doing while the runner works. On a
// terminal it redraws one line per target in place, with the elapsed time
// of the current step; elsewhere (CI logs, pipes) it prints a line whenever
// a step starts or ends, and a summary of the running steps every 30 s.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	live    bool
	start   time.Time
	rows    []*progressRow
	drawn   int // lines of the live block currently on screen
	stop    chan struct{}
	stopped chan struct{}
	now     func() time.Time
}

type progressRow struct {
	target    string
	step      string
	detail    string
	stepStart time.Time
	finished  bool
	verdict   string
}

// heartbeat is how often the non-terminal display summarises running steps.
const heartbeat = 30 * time.Second

// newProgress returns a display for the targets on w; live redrawing is
// used when w is a terminal.
func newProgress(w io.Writer, targets []string) *progress {
	p := &progress{w: w, live: isTerminal(w), start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{}), now: time.Now}
	for _, t := range targets {
		p.rows = append(p.rows, &progressRow{target: t, step: "waiting"})
	}
	return p
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// run redraws (terminal) or summarises (elsewhere) until close.
func (p *progress) run() {
	defer close(p.stopped)
	interval := heartbeat
	if p.live {
		interval = 250 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
			p.mu.Lock()
			if p.live {
				p.redraw()
			} else {
				p.summary()
			}
			p.mu.Unlock()
		}
	}
}

// close stops the display, leaving the final state on screen.
func (p *progress) close() {
	close(p.stop)
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live {
		p.redraw()
	}
}

func (p *progress) row(target string) *progressRow {
	for _, r := range p.rows {
		if r.target == target {
			return r
		}
	}
	r := &progressRow{target: target}
	p.rows = append(p.rows, r)
	return r
}

// begin marks the start of a step of a target.
func (p *progress) begin(target, step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.row(target)
	r.step, r.detail, r.stepStart = step, "", p.now()
	if !p.live {
		fmt.Fprintf(p.w, "[%s] %-16s %-9s started\n", p.elapsed(), target, step)
	}
}

// end marks the end of the current step; err nil means it succeeded.
func (p *progress) end(target string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.row(target)
	took := p.now().Sub(r.stepStart).Round(100 * time.Millisecond)
	if !p.live {
		verdict := "done"
		if err != nil {
			verdict = "FAILED: " + firstLine(err.Error())
		}
		fmt.Fprintf(p.w, "[%s] %-16s %-9s %s in %s\n", p.elapsed(), target, r.step, verdict, took)
	}
	if err != nil {
		r.detail = "FAILED: " + firstLine(err.Error())
	}
}

// detail sets what the current step of a target is busy with, e.g. the
// benchmark running now.
func (p *progress) detail(target, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.row(target).detail = text
}

// finish marks a target as done, with a short verdict.
func (p *progress) finish(target, verdict string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.row(target)
	r.finished, r.verdict, r.step = true, verdict, "finished"
	if !p.live {
		fmt.Fprintf(p.w, "[%s] %-16s %s\n", p.elapsed(), target, verdict)
	}
}

// redraw rewrites the block of target lines in place.
func (p *progress) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	fmt.Fprintf(&b, "\x1b[2K%s elapsed\n", p.elapsed())
	for _, r := range p.rows {
		b.WriteString("\x1b[2K" + p.describe(r) + "\n")
	}
	p.drawn = len(p.rows) + 1
	io.WriteString(p.w, b.String())
}

// summary prints the running steps, for logs that cannot be redrawn.
func (p *progress) summary() {
	var running []string
	for _, r := range p.rows {
		if !r.finished && r.step != "waiting" {
			running = append(running, p.describe(r))
		}
	}
	if len(running) == 0 {
		return
	}
	fmt.Fprintf(p.w, "[%s] running:\n", p.elapsed())
	for _, line := range running {
		fmt.Fprintln(p.w, "    "+line)
	}
}

func (p *progress) describe(r *progressRow) string {
	if r.finished {
		return fmt.Sprintf("%-16s %s", r.target, r.verdict)
	}
	if r.step == "waiting" {
		return fmt.Sprintf("%-16s waiting", r.target)
	}
	line := fmt.Sprintf("%-16s %-9s %6s", r.target, r.step, p.now().Sub(r.stepStart).Round(time.Second))
	if r.detail != "" {
		line += "  " + r.detail
	}
	return line
}

func (p *progress) elapsed() string {
	d := p.now().Sub(p.start).Round(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
