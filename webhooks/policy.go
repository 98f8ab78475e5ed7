package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/runledger/runledger/domain"
)

// Resolver looks up a host's addresses; *net.Resolver is one, and tests
// inject their own to make a name resolve to a private address later.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy decides which URLs an endpoint may have and which addresses a
// delivery may reach.
type Policy struct {
	// AllowInsecure accepts http:// URLs (--webhook-allow-insecure).
	AllowInsecure bool
	// AllowPrivate accepts targets on loopback, private, link-local and
	// metadata addresses (--webhook-allow-private).
	AllowPrivate bool
	// Resolver resolves host names (default net.DefaultResolver).
	Resolver Resolver
}

// ErrForbiddenTarget means a URL's host is, or resolves to, an address the
// policy refuses.
var ErrForbiddenTarget = errors.New("webhook target is a loopback, private, link-local or metadata address")

func (p Policy) resolver() Resolver {
	if p.Resolver == nil {
		return net.DefaultResolver
	}
	return p.Resolver
}

// CheckURL parses raw and checks its scheme and its target's addresses (each
// resolved now); it returns a *domain.ValidationError on the url field.
func (p Policy) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return nil, domain.Invalid("url", "must be an absolute URL")
	case u.Scheme != "https" && !(u.Scheme == "http" && p.AllowInsecure):
		if u.Scheme == "http" {
			return nil, domain.Invalid("url", "must use https (http needs --webhook-allow-insecure)")
		}
		return nil, domain.Invalid("url", "must use https")
	case u.User != nil:
		return nil, domain.Invalid("url", "must not carry credentials")
	case u.Fragment != "":
		return nil, domain.Invalid("url", "must not have a fragment")
	}
	if _, err := p.addrs(ctx, u.Hostname()); err != nil {
		if errors.Is(err, ErrForbiddenTarget) {
			return nil, domain.Invalid("url", "resolves to a loopback, private, link-local or metadata address (allowed only with --webhook-allow-private)")
		}
		return nil, domain.Invalid("url", "host does not resolve: "+u.Hostname())
	}
	return u, nil
}

// addrs resolves host (an IP literal stands for itself) and returns its
// addresses; ErrForbiddenTarget if any of them is refused.
func (p Policy) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var list []netip.Addr
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		list = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if list, err = p.resolver().LookupNetIP(ctx, "ip", host); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	if !p.AllowPrivate {
		for _, a := range list {
			if Forbidden(a) {
				return nil, fmt.Errorf("%s (%s): %w", host, a, ErrForbiddenTarget)
			}
		}
	}
	return list, nil
}

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // carrier-grade NAT
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	benchmark   = netip.MustParsePrefix("198.18.0.0/15")
	reserved    = netip.MustParsePrefix("240.0.0.0/4")
	// Cloud metadata services outside the link-local range.
	metadata = []netip.Addr{netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("100.100.100.200")}
)

// Forbidden reports whether a delivery may not reach a: loopback, private
// (RFC 1918, unique local), link-local (which holds 169.254.169.254, the
// usual metadata address), unspecified, multicast, shared, reserved, or a
// known metadata address.
func Forbidden(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, m := range metadata {
		if a == m {
			return true
		}
	}
	if a.Is4() {
		return sharedSpace.Contains(a) || thisNetwork.Contains(a) || benchmark.Contains(a) || reserved.Contains(a) ||
			a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return false
}

// dialContext dials addr through the policy: the host is resolved at this
// dial, every address checked, and the connection made to a checked address
// (never resolved again by the dialer), so a name cannot change between the
// check and the connection.
func (p Policy) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		list, err := p.addrs(ctx, host)
		if err != nil {
			return nil, err
		}
		var first error
		for _, a := range list {
			conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return conn, nil
			}
			if first == nil {
				first = err
			}
		}
		return nil, first
	}
}
