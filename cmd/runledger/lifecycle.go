package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// component is a part of serve that works in the background: run works
// until ctx ends, then returns (nil or ctx's error). Returning while ctx is
// still live, with an error or without, is a failure of the whole process.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// components runs a set of components side by side (see startComponents).
type components struct {
	cancel  context.CancelFunc
	failed  chan error
	done    chan struct{}
	mu      sync.Mutex
	running map[string]bool
}

// startComponents starts each of list on a context derived from ctx.
func startComponents(ctx context.Context, logger *slog.Logger, list ...component) *components {
	ctx, cancel := context.WithCancel(ctx)
	g := &components{cancel: cancel, failed: make(chan error, len(list)), done: make(chan struct{}), running: map[string]bool{}}
	for _, c := range list {
		g.running[c.name] = true
	}
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Go(func() {
			err := c.run(ctx)
			g.mu.Lock()
			delete(g.running, c.name)
			g.mu.Unlock()
			switch {
			case ctx.Err() == nil && err == nil:
				g.failed <- fmt.Errorf("%s stopped unexpectedly", c.name)
			case ctx.Err() == nil:
				g.failed <- fmt.Errorf("%s: %w", c.name, err)
			case err != nil && !errors.Is(err, context.Canceled):
				logger.Warn("component stopped with an error", "component", c.name, "err", err)
			}
		})
	}
	go func() { wg.Wait(); close(g.done) }()
	return g
}

// Failed delivers an error naming each component that stopped on its own.
func (g *components) Failed() <-chan error { return g.failed }

// Stop ends the components and waits for them until deadline ends; it
// returns an error naming those still running then (they are abandoned:
// the process is about to exit).
func (g *components) Stop(deadline context.Context) error {
	g.cancel()
	select {
	case <-g.done:
		return nil
	case <-deadline.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var names []string
	for name := range g.running {
		names = append(names, name)
	}
	if len(names) == 0 { // they all returned as the deadline passed
		return nil
	}
	slices.Sort(names)
	return fmt.Errorf("%s did not stop in time", strings.Join(names, ", "))
}
