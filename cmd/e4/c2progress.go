package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// progressBar draws "label [#####.....] done/total pct" on stderr,
// redrawing in place.
type progressBar struct {
	w       io.Writer
	label   string
	total   int64
	enabled bool
	last    string
}

// progressWidth is the number of cells of the bar.
const progressWidth = 30

// newProgress returns a bar on stderr, enabled per --progress.
func (s *c2Session) newProgress(label string, total int64) *progressBar {
	enabled := s.f.progress == "always" || (s.f.progress == "auto" && isTerminal(s.errOut))
	return &progressBar{w: s.errOut, label: label, total: total, enabled: enabled}
}

// set draws the bar for done units (total 0: a counter without a bar).
func (p *progressBar) set(done int64) {
	if !p.enabled {
		return
	}
	var line string
	if p.total <= 0 {
		line = fmt.Sprintf("%s %d", p.label, done)
	} else {
		done = min(max(done, 0), p.total)
		filled := int(done * progressWidth / p.total)
		line = fmt.Sprintf("%s [%s%s] %d/%d %d%%", p.label, strings.Repeat("#", filled), strings.Repeat(".", progressWidth-filled),
			done, p.total, done*100/p.total)
	}
	if line == p.last {
		return
	}
	p.last = line
	fmt.Fprint(p.w, "\r"+line)
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	if p.enabled && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

// waitPollInterval is how often --wait checks the outbox.
const waitPollInterval = 250 * time.Millisecond

// waitDelivered follows the delivery of the commands about target (a
// topic, or "c2" for a C2 key rotation): it waits until none is pending,
// drawing a bar of the queued ones delivered, and fails if any failed.
func (s *c2Session) waitDelivered(ctx context.Context, target string, queued int64) error {
	bar := s.newProgress("delivering", queued)
	defer bar.finish()
	for {
		pending, err := s.client.ListCommands(ctx, &c2pb.ListCommandsRequest{Target: target, State: "pending", Limit: 1})
		if err != nil {
			return err
		}
		bar.set(queued - pending.Total)
		if pending.Total == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d commands about %s still pending: %w", pending.Total, target, ctx.Err())
		case <-time.After(waitPollInterval):
		}
	}
	failed, err := s.client.ListCommands(ctx, &c2pb.ListCommandsRequest{Target: target, State: "failed", Limit: 1})
	if err != nil {
		return err
	}
	if failed.Total > 0 {
		return fmt.Errorf("%d commands about %s failed (e4 c2 command list --target %s --state failed)", failed.Total, target, target)
	}
	return nil
}
