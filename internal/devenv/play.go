package devenv

import (
	"context"
	"strings"
	"sync"
	"time"
)

// play connects the devices, lets them talk, rotates the key and removes
// the last device, until ctx ends.
func (e *env) play(ctx context.Context) (Summary, error) {
	var devices []*simDevice
	for _, name := range DeviceNames {
		d, err := e.connect(ctx, name)
		if err != nil {
			return Summary{}, err
		}
		devices = append(devices, d)
	}
	if err := e.ensureMembership(ctx, devices); err != nil {
		return Summary{}, err
	}
	e.out.line("devices   %s hold the key of %s; each publishes every %v", strings.Join(DeviceNames, ", "), Topic, e.opts.PublishEvery)
	e.out.line("          C2 rotates the key every %v and removes %s after %d rotations; Ctrl-C stops", e.opts.RotateEvery, DeviceNames[len(DeviceNames)-1], e.opts.RemoveAfter)
	e.out.line("")

	if e.opts.Duration > 0 {
		// Counted from here: a slow start (a loaded machine) must not eat
		// the time the devices run.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.opts.Duration)
		defer cancel()
	}
	var wg sync.WaitGroup
	for i, d := range devices {
		wg.Add(2)
		go func() { defer wg.Done(); d.publishLoop(ctx, e.opts.PublishEvery, e.out) }()
		go func() { defer wg.Done(); d.readLoop(ctx, i == 1, e.out) }()
	}
	sum := Summary{}
	e.rotateLoop(ctx, devices, &sum)
	wg.Wait()
	e.out.line("")
	for _, d := range devices {
		d.mu.Lock()
		ds := DeviceSummary{Name: d.name, Published: d.published.Load(), Read: d.read, Lost: d.lost, Unreadable: d.readFail.Load()}
		d.mu.Unlock()
		sum.Devices = append(sum.Devices, ds)
		e.out.line("summary   %-16s published %d, read %d from the others, lost %d, unreadable %d", ds.Name, ds.Published, ds.Read, ds.Lost, ds.Unreadable)
	}
	return sum, nil
}

// rotateLoop rotates the topic key every RotateEvery and, after
// RemoveAfter rotations, removes the last device from the topic.
func (e *env) rotateLoop(ctx context.Context, devices []*simDevice, sum *Summary) {
	ticker := time.NewTicker(e.opts.RotateEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if sum.Rotations == e.opts.RemoveAfter && sum.Removed == "" {
			e.remove(ctx, devices[len(devices)-1], sum)
			continue
		}
		n, err := e.svc.RotateTopic(ctx, Topic)
		if err != nil {
			if ctx.Err() == nil {
				e.out.line("C2        rotation failed: %v", err)
			}
			continue
		}
		sum.Rotations++
		info, _ := e.svc.GetTopic(ctx, Topic)
		e.out.line("C2        rotated the key of %s to version %d: %d SetTopicKey commands; devices switch without losing a message", Topic, info.KeyVersion, n)
	}
}

func (e *env) remove(ctx context.Context, d *simDevice, sum *Summary) {
	d.member.Store(false)
	if err := e.svc.RemoveMember(ctx, Topic, d.client.ID()); err != nil {
		e.out.line("C2        removing %s failed: %v", d.name, err)
		return
	}
	sum.Removed = d.name
	e.out.line("C2        removed %s from %s: RemoveTopic sent to it, and the key rotated for the others,", d.name, Topic)
	e.out.line("          so even a copy of its old key reads nothing new")
}
