package api_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/projections"
)

// scrapeLoad is a phase of TestScrapersCostNothingPerRequest: GET active
// requests one after the other, their latencies, and the reads pool's
// statements meanwhile.
type scrapeLoad struct {
	latencies []time.Duration
	queries   int64
	took      time.Duration
}

func (l scrapeLoad) add(o scrapeLoad) scrapeLoad {
	return scrapeLoad{latencies: append(l.latencies, o.latencies...), queries: l.queries + o.queries, took: l.took + o.took}
}

func (l scrapeLoad) p99() time.Duration {
	s := slices.Clone(l.latencies)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// /metrics and /readyz need no token, so anyone who reaches the port can
// call them: they must cost the database nothing per request. 200 scrapers,
// each scraping once a second (200 scrapes/s, about 3,000 times a real
// Prometheus's rate), for 10 s of /metrics and /readyz, against 10 s of the
// same scrapers on /healthz (the control: the same HTTP load, no work),
// interleaved in two rounds so the machine's load drifts over both alike,
// while GET active requests run one after the other:
//
//   - statements on the reads pool beyond the GET requests' own (measured in
//     the control): at most one refresh per second of scraping, plus one as
//     each window begins (the values are refreshed at most once a second per
//     replica). The lag comes from the server's LagMonitor on its own pool,
//     as in serve. The statements are counted as the pools send them (a
//     pgx tracer), not in pg_stat_database or pg_stat_statements: a
//     backend of PostgreSQL 15 flushes its counts lazily (an idle one up to
//     10 s late), which blurs 5 s windows, and pg_stat_statements needs a
//     preloaded library the shared test cluster does not load. The commands
//     pool is left out: TestLogReadsUseTheReadsPool shows /metrics and
//     /readyz send nothing there.
//   - GET active's p99, against the control (the same HTTP load doing
//     nothing: the HTTP handling of 200 requests a second alone moves the
//     p99 several times over on a loaded 2-core machine under -race). The
//     target is at most 10% more, which the test reports (the log line
//     says whether it held) but asserts only as at most three times the
//     control plus 250 ms: a p99 over ~500 requests on a machine shared with other
//     builds moves by more than 10% on its own, and a test that flakes is
//     worth less than its bound. Scrapes that query the database (as they
//     did) moved it from ~150 ms to seconds, which the loose bound catches;
//     the strict assertion is the statements' count.
func TestScrapersCostNothingPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s of load")
	}
	var reads *queryCounter
	var lag *projections.LagMonitor
	e := newEnvWith(t, func(c *api.Config) {
		lagPool, _ := countingPool(t, c.Pool)
		lag = projections.NewLagMonitor(lagPool, 250*time.Millisecond)
		c.Lag = lag
		c.Pool, reads = countingPool(t, c.Pool)
	})
	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	t.Cleanup(func() { cancel(); bg.Wait() })
	if err := lag.Measure(ctx); err != nil {
		t.Fatal(err)
	}
	bg.Add(1)
	go func() { defer bg.Done(); lag.Run(ctx) }()
	for i := range 20 {
		e.start("m"+strconv.Itoa(i), 10)
	}
	user := e.token("m0", api.RoleUser)
	client := &http.Client{Transport: &http.Transport{}}
	get := func(path, token string) {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, res.StatusCode)
		}
	}
	load := func(d time.Duration) scrapeLoad {
		var l scrapeLoad
		before, began := reads.n.Load(), time.Now()
		for time.Since(began) < d {
			t0 := time.Now()
			get("/v1/businesses/m0/runs/active", user)
			l.latencies = append(l.latencies, time.Since(t0))
			time.Sleep(10 * time.Millisecond)
		}
		l.queries, l.took = reads.n.Load()-before, time.Since(began)
		return l
	}

	// Every scraper runs from the start to the end; between windows they all
	// switch between /healthz (the control: the same HTTP load, no work)
	// and /metrics or /readyz.
	var scrapes atomic.Int64
	var real atomic.Bool
	stop := make(chan struct{})
	var sw sync.WaitGroup
	for i := range 200 {
		sw.Add(1)
		go func() {
			defer sw.Done()
			// The scrapers stand for other machines: each keeps one
			// connection and parses only the status line and the length,
			// so the test's own client costs this process little.
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			rd := bufio.NewReader(conn)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			time.Sleep(time.Duration(i) * 5 * time.Millisecond) // spread over the second
			for {
				path := "/healthz"
				if real.Load() {
					path = [2]string{"/metrics", "/readyz"}[i%2]
				}
				if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: test\r\nAccept-Encoding: gzip\r\n\r\n"); err != nil {
					t.Error(err)
					return
				}
				res, err := http.ReadResponse(rd, nil)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					t.Errorf("GET %s: %d", path, res.StatusCode)
				}
				scrapes.Add(1)
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	time.Sleep(2 * time.Second) // every scraper has begun
	var control, scraped scrapeLoad
	windows := 0
	for range 2 {
		control = control.add(load(5 * time.Second))
		real.Store(true)
		scraped = scraped.add(load(5 * time.Second))
		real.Store(false)
		windows++
	}
	close(stop)
	sw.Wait()

	perGet := float64(control.queries) / float64(len(control.latencies))
	extra := float64(scraped.queries) - perGet*float64(len(scraped.latencies))
	t.Logf("200 scrapers, %d scrapes; scraping /healthz: %d GETs, p99 %s, %.2f statements per GET; scraping /metrics and /readyz for %s: %d GETs, p99 %s, %.0f statements beyond the GETs' (%.2f/s)",
		scrapes.Load(), len(control.latencies), control.p99(), perGet, scraped.took.Round(time.Millisecond), len(scraped.latencies),
		scraped.p99(), extra, extra/scraped.took.Seconds())
	if limit := scraped.took.Seconds() + float64(windows); extra > limit {
		t.Errorf("the scrapes cost %.0f statements in %s (at most %.0f: one refresh a second, and one as each window begins)",
			extra, scraped.took.Round(time.Millisecond), limit)
	}
	t.Logf("GET active p99 within 10%% of the control: %v (%s against %s)", scraped.p99() <= control.p99()*110/100, scraped.p99(), control.p99())
	if limit := control.p99()*3 + 250*time.Millisecond; scraped.p99() > limit {
		t.Errorf("GET active p99 %s while /metrics and /readyz were scraped, %s while /healthz was (limit %s)", scraped.p99(), control.p99(), limit)
	}
}
