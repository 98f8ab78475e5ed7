package client_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/runledger/runledger/api/client"
)

// dial places one call; it returns early when ctx ends.
func dial(ctx context.Context, lead string) error {
	select {
	case <-time.After(time.Second):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// A worker: the README's "Write a worker" example.
func Example_worker() {
	c, err := client.New(client.Options{BaseURL: "http://127.0.0.1:8080", Token: os.Getenv("WORKER_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	leads := []string{"+33 1 23 45 67 89", "+33 6 12 34 56 78", "+33 7 98 76 54 32"}
	run, err := c.Run(context.Background(), "demo", client.RunSpec{TotalCalls: len(leads)},
		func(ctx context.Context, p *client.Progress) error {
			for _, lead := range leads {
				if err := p.WaitIfPaused(ctx); err != nil {
					return err // cancelled, fenced or stopped: place no new call
				}
				if err := dial(ctx, lead); err != nil {
					p.Add(0, 1)
				} else {
					p.Add(1, 0)
				}
			}
			return nil
		})
	log.Printf("run %s: %s (%v)", run.RunID, run.Status, err)
}
