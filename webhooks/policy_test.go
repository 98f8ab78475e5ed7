package webhooks_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/runledger/runledger/webhooks"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestForbiddenAddresses(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "10.0.0.1": true, "172.16.5.4": true, "192.168.1.1": true, "169.254.169.254": true,
		"fe80::1": true, "fd00:ec2::254": true, "0.0.0.0": true, "::": true, "100.64.0.1": true, "::ffff:127.0.0.1": true,
		"224.0.0.1": true, "8.8.8.8": false, "203.0.113.7": false, "2001:4860:4860::8888": false,
	} {
		if got := webhooks.Forbidden(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Forbidden(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestSignatureVerifiesWithTheLibrary: each of two secrets (a rotation
// window) verifies the header on its own with the published library.
func TestSignatureVerifiesWithTheLibrary(t *testing.T) {
	a, b := webhooks.NewSecret(), webhooks.NewSecret()
	ts := time.Now()
	body := []byte(`{"type":"run.started"}`)
	sig, err := webhooks.Sign([]string{a, b}, "msg_1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{a, b} {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		h := map[string][]string{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {itoa(ts.Unix())}, "Webhook-Signature": {sig}}
		if err := wh.Verify(body, h); err != nil {
			t.Fatalf("secret %d: %v (signature %s)", len(secret), err, sig)
		}
		want, _ := wh.Sign("msg_1", ts, body)
		if got := sig; got[:len(want)] != want && got[len(got)-len(want):] != want {
			t.Fatalf("signature %s does not hold the library's %s", got, want)
		}
	}
	other, _ := standardwebhooks.NewWebhook(webhooks.NewSecret())
	if err := other.Verify(body, map[string][]string{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {itoa(ts.Unix())},
		"Webhook-Signature": {sig}}); err == nil {
		t.Fatal("a third secret verified")
	}
}

// mutableResolver resolves names from a map the test changes.
type mutableResolver struct {
	mu    sync.Mutex
	hosts map[string][]netip.Addr
}

func (r *mutableResolver) set(host, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[host] = []netip.Addr{netip.MustParseAddr(addr)}
}

func (r *mutableResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.hosts[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}

func TestPolicyRefusesAtRegistration(t *testing.T) {
	res := &mutableResolver{hosts: map[string][]netip.Addr{}}
	res.set("public.example", "203.0.113.7")
	res.set("private.example", "192.168.0.10")
	strict := webhooks.Policy{Resolver: res}
	for raw, ok := range map[string]bool{
		"https://public.example/hook": true, "http://public.example/hook": false, "https://private.example/": false,
		"https://127.0.0.1/": false, "https://[::1]/": false, "https://169.254.169.254/": false, "https://localhost./": false,
		"ftp://public.example/": false,
	} {
		_, err := strict.CheckURL(context.Background(), raw)
		if (err == nil) != ok {
			t.Errorf("CheckURL(%s) = %v, want ok=%v", raw, err, ok)
		}
	}
	loose := webhooks.Policy{Resolver: res, AllowPrivate: true, AllowInsecure: true}
	if _, err := loose.CheckURL(context.Background(), "http://private.example/"); err != nil {
		t.Errorf("allowed policy refused: %v", err)
	}
}
