package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
)

// Service is a part of a process that works in the background: Run works
// until ctx ends, then returns nil (or ctx's error). Returning while ctx is
// still live, with an error or without, is a failure of the whole process.
type Service interface {
	Run(ctx context.Context) error
}

// Func makes a function a Service.
type Func func(ctx context.Context) error

// Run calls f.
func (f Func) Run(ctx context.Context) error { return f(ctx) }

// Named is a Service with the name a Group reports it by.
type Named struct {
	Name    string
	Service Service
}

// Group runs a set of services side by side (see Start).
type Group struct {
	cancel  context.CancelFunc
	failed  chan error
	done    chan struct{}
	mu      sync.Mutex
	running map[string]bool
}

// Start starts each of list on a context derived from ctx; Stop ends them.
// A service that returns while that context is live is reported on Failed by
// name; one that returns an error other than cancellation after Stop is
// logged. It panics if two services share a name (their reports would be
// indistinguishable).
func Start(ctx context.Context, logger *slog.Logger, list ...Named) *Group {
	ctx, cancel := context.WithCancel(ctx)
	g := &Group{cancel: cancel, failed: make(chan error, len(list)), done: make(chan struct{}), running: map[string]bool{}}
	for _, s := range list {
		if g.running[s.Name] {
			panic(fmt.Sprintf("service: two services named %q", s.Name))
		}
		g.running[s.Name] = true
	}
	var wg sync.WaitGroup
	for _, s := range list {
		wg.Go(func() {
			err := runService(ctx, logger, s)
			g.mu.Lock()
			delete(g.running, s.Name)
			g.mu.Unlock()
			switch {
			case ctx.Err() == nil && err == nil:
				g.failed <- fmt.Errorf("%s stopped unexpectedly", s.Name)
			case errors.As(err, new(panicError)):
				g.failed <- fmt.Errorf("%s %w", s.Name, err) // even during Stop (its stack is in the log)
			case ctx.Err() == nil:
				g.failed <- fmt.Errorf("%s: %w", s.Name, err)
			case err != nil && !errors.Is(err, context.Canceled):
				logger.Warn("service stopped with an error", "service", s.Name, "err", err)
			}
		})
	}
	go func() { wg.Wait(); close(g.done) }()
	return g
}

// panicError is a service's panic, turned into its return value: a
// panicking service stops the process like any other early exit, through a
// graceful shutdown of the others, instead of killing it mid-request.
type panicError struct{ value any }

func (p panicError) Error() string { return fmt.Sprintf("panicked: %v", p.value) }

// runService runs s.Service, recovering a panic into a panicError (its stack
// goes to the log).
func runService(ctx context.Context, logger *slog.Logger, s Named) (err error) {
	defer func() {
		if r := recover(); r != nil {
			logger.Error("service panicked", "service", s.Name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = panicError{r}
		}
	}()
	return s.Service.Run(ctx)
}

// Failed delivers an error naming each service that stopped on its own.
func (g *Group) Failed() <-chan error { return g.failed }

// Stop ends the services and waits for them until deadline ends; it returns
// an error naming those still running then (they are abandoned: the process
// is about to exit).
func (g *Group) Stop(deadline context.Context) error {
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
