package api_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/webhooks"
)

// fakeResolver resolves names from a map the test may change.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]netip.Addr
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.hosts[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}

func newWebhookEnv(t *testing.T) *env {
	res := &fakeResolver{hosts: map[string][]netip.Addr{
		"hooks.example.com":    {netip.MustParseAddr("203.0.113.7")},
		"internal.example.com": {netip.MustParseAddr("10.1.2.3")},
		"meta.example.com":     {netip.MustParseAddr("169.254.169.254")},
	}}
	return newEnvWith(t, func(c *api.Config) {
		c.Webhooks = &webhooks.Endpoints{Pool: c.Pool, Now: c.Now, Policy: webhooks.Policy{Resolver: res}}
	})
}

func TestWebhookEndpointsLifecycle(t *testing.T) {
	e := newWebhookEnv(t)
	user := e.token("acme", api.RoleUser)
	base := "/v1/businesses/acme/webhooks"
	created := e.must(e.do("POST", base, user, map[string]any{"url": "https://hooks.example.com/runledger",
		"events": []string{"run.completed", "run.started", "run.completed"}, "description": "CRM"}), 201, "")
	secret, id := created.str("secret"), created.str("id")
	if !strings.HasPrefix(secret, "whsec_") || len(secret) < 30 {
		t.Fatalf("secret %q", secret)
	}
	if got := fmt.Sprint(created.body["events"]); got != "[run.started run.completed]" {
		t.Fatalf("events %s", got)
	}
	if loc := created.header.Get("Location"); loc != base+"/"+id {
		t.Fatalf("Location %q", loc)
	}

	got := e.must(e.do("GET", base+"/"+id, user, nil), 200, "")
	if got.str("secret") != "" || got.str("url") != "https://hooks.example.com/runledger" || got.str("description") != "CRM" {
		t.Fatalf("get: %s", got.raw)
	}
	list := e.must(e.do("GET", base, e.token("*", api.RoleOperator), nil), 200, "")
	if strings.Contains(string(list.raw), secret) || !strings.Contains(string(list.raw), id) {
		t.Fatalf("list: %s", list.raw)
	}

	// Another business's token: the endpoint does not exist; a worker may not.
	e.must(e.do("GET", "/v1/businesses/other/webhooks/"+id, e.token("other", api.RoleUser), nil), 404, "not_found")
	e.must(e.do("GET", base+"/"+id, e.token("other", api.RoleUser), nil), 404, "not_found")
	e.must(e.do("DELETE", "/v1/businesses/other/webhooks/"+id, e.token("other", api.RoleUser), nil), 404, "not_found")
	e.must(e.do("GET", base, e.token("acme", api.RoleWorker), nil), 403, "forbidden")
	e.must(e.do("GET", base+"/not-a-uuid", user, nil), 400, "validation_failed")

	dis := e.must(e.do("POST", base+"/"+id+"/disable", user, nil), 200, "")
	if dis.body["disabled"] != true || dis.str("disabled_reason") != "disabled by a user" {
		t.Fatalf("disable: %s", dis.raw)
	}
	en := e.must(e.do("POST", base+"/"+id+"/enable", user, nil), 200, "")
	if en.body["disabled"] != false {
		t.Fatalf("enable: %s", en.raw)
	}
	rot := e.must(e.do("POST", base+"/"+id+"/rotate-secret", user, nil), 200, "")
	if s := rot.str("secret"); !strings.HasPrefix(s, "whsec_") || s == secret || rot.str("previous_secret_until") == "" {
		t.Fatalf("rotate: %s", rot.raw)
	}
	deliveries := e.must(e.do("GET", base+"/"+id+"/deliveries", user, nil), 200, "")
	if string(deliveries.raw) != "{\"deliveries\":[]}\n" {
		t.Fatalf("deliveries: %s", deliveries.raw)
	}
	e.must(e.do("DELETE", base+"/"+id, user, nil), 204, "")
	e.must(e.do("GET", base+"/"+id, user, nil), 404, "not_found")
	e.must(e.do("DELETE", base+"/"+id, user, nil), 404, "not_found")
}

// TestWebhookRegistrationRefusals: bad input is refused with a field named
// and stores nothing; targets on loopback, private, link-local and metadata
// addresses are refused under the default policy, names included.
func TestWebhookRegistrationRefusals(t *testing.T) {
	e := newWebhookEnv(t)
	user := e.token("acme", api.RoleUser)
	base := "/v1/businesses/acme/webhooks"
	cases := []struct {
		name string
		body any
		code string
	}{
		{"http", map[string]any{"url": "http://hooks.example.com/", "events": []string{"run.started"}}, "validation_failed"},
		{"loopback", map[string]any{"url": "https://127.0.0.1/", "events": []string{"run.started"}}, "validation_failed"},
		{"loopback v6", map[string]any{"url": "https://[::1]:8443/", "events": []string{"run.started"}}, "validation_failed"},
		{"private name", map[string]any{"url": "https://internal.example.com/", "events": []string{"run.started"}}, "validation_failed"},
		{"metadata", map[string]any{"url": "https://169.254.169.254/latest", "events": []string{"run.started"}}, "validation_failed"},
		{"metadata name", map[string]any{"url": "https://meta.example.com/", "events": []string{"run.started"}}, "validation_failed"},
		{"unresolvable", map[string]any{"url": "https://nowhere.example.com/", "events": []string{"run.started"}}, "validation_failed"},
		{"no events", map[string]any{"url": "https://hooks.example.com/", "events": []string{}}, "validation_failed"},
		{"events missing", map[string]any{"url": "https://hooks.example.com/"}, "validation_failed"},
		{"unknown event", map[string]any{"url": "https://hooks.example.com/", "events": []string{"run.heartbeat"}}, "validation_failed"},
		{"unknown field", map[string]any{"url": "https://hooks.example.com/", "events": []string{"run.started"}, "secret": "x"}, "validation_failed"},
		{"credentials", map[string]any{"url": "https://u:p@hooks.example.com/", "events": []string{"run.started"}}, "validation_failed"},
		{"relative", map[string]any{"url": "/hook", "events": []string{"run.started"}}, "validation_failed"},
	}
	for _, c := range cases {
		r := e.do("POST", base, user, c.body)
		if r.status != 400 || r.str("code") != c.code {
			t.Errorf("%s: %d %s, want 400 %s", c.name, r.status, r.raw, c.code)
		}
	}
	list := e.must(e.do("GET", base, user, nil), 200, "")
	if string(list.raw) != "{\"webhooks\":[]}\n" {
		t.Fatalf("refused registrations stored something: %s", list.raw)
	}
}
