package api

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/bounded"
)

// Role is what a token's holder may do.
type Role string

// The roles of the contract.
const (
	RoleWorker   Role = "worker"
	RoleUser     Role = "user"
	RoleOperator Role = "operator"
)

// AnyBusiness is the business_id claim of an operator token valid for every business.
const AnyBusiness = "*"

// MinSecretLen is the least length of RUNLEDGER_AUTH_SECRET (HS256 wants 256 bits).
const MinSecretLen = 32

// Claims are the claims of a runledger token.
type Claims struct {
	BusinessID string `json:"business_id"`
	Role       Role   `json:"role"`
	jwt.RegisteredClaims
}

// Authenticator mints and checks HS256 tokens with one shared secret.
type Authenticator struct {
	secret []byte
	now    func() time.Time
	// verified remembers tokens whose signature and claims were checked: a
	// worker sends the same token with every heartbeat, and only its expiry
	// (and not-before) can change its verdict. Bounded; it starts over when full.
	verified *bounded.Map[string, Claims]
}

// maxVerifiedTokens bounds the cache of verified tokens.
const maxVerifiedTokens = 50_000

// NewAuthenticator returns an Authenticator, or an error if the secret is
// shorter than MinSecretLen bytes.
func NewAuthenticator(secret string, now func() time.Time) (*Authenticator, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("RUNLEDGER_AUTH_SECRET must be at least %d bytes", MinSecretLen)
	}
	if now == nil {
		now = time.Now
	}
	return &Authenticator{secret: []byte(secret), now: now, verified: bounded.New[string, Claims](maxVerifiedTokens)}, nil
}

// TokenSpec describes a token to mint.
type TokenSpec struct {
	// Business is the business id, or AnyBusiness for an operator of every business.
	Business string
	Role     Role
	// Subject names the holder ("alice", "dialer-7"); events the holder
	// causes record it as their actor ("user:alice"). Optional.
	Subject string
	TTL     time.Duration
}

// subjectPattern is what a token subject may be: it appears in event
// metadata and audit lines as "role:subject".
var subjectPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$`)

// MintToken returns a signed token for spec. It returns a validation error
// for an unknown role, a malformed business id or subject, or a non-positive TTL.
func (a *Authenticator) MintToken(spec TokenSpec) (string, error) {
	if err := checkClaims(spec.Business, spec.Role, spec.Subject); err != nil {
		return "", err
	}
	if spec.TTL <= 0 {
		return "", domain.Invalid("ttl", "must be positive")
	}
	now := a.now()
	claims := Claims{BusinessID: spec.Business, Role: spec.Role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: spec.Subject, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(spec.TTL)), Issuer: "runledger"}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
}

// Mint is MintToken without a subject.
func (a *Authenticator) Mint(business string, role Role, ttl time.Duration) (string, error) {
	return a.MintToken(TokenSpec{Business: business, Role: role, TTL: ttl})
}

// Parse verifies a bearer token (signature in constant time, HS256 only,
// expiry required) and returns its claims.
func (a *Authenticator) Parse(token string) (Claims, error) {
	if c, ok := a.verified.Get(token); ok {
		now := a.now()
		if now.Before(c.ExpiresAt.Time) && (c.NotBefore == nil || !now.Before(c.NotBefore.Time)) {
			return c, nil
		}
		a.verified.Delete(token) // expired: the full check below says so
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(a.now))
	if err != nil {
		return Claims{}, err
	}
	if err := checkClaims(c.BusinessID, c.Role, c.Subject); err != nil {
		return Claims{}, err
	}
	a.verified.Put(token, c)
	return c, nil
}

func checkClaims(business string, role Role, subject string) error {
	if subject != "" && !subjectPattern.MatchString(subject) {
		return domain.Invalid("subject", "must be 1-128 characters of letters, digits, '_', '.', '@', '-'")
	}
	switch role {
	case RoleWorker, RoleUser, RoleOperator:
	default:
		return domain.Invalid("role", "must be worker, user or operator")
	}
	if business == AnyBusiness {
		if role != RoleOperator {
			return domain.Invalid("business_id", "only an operator token may be valid for every business (*)")
		}
		return nil
	}
	return domain.ValidateBusinessID(business)
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(header string) (string, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", errors.New("missing bearer token")
	}
	return strings.TrimSpace(token), nil
}

// allows reports whether role may do what the route's roles may: an operator
// may do what a user may; a worker may also read.
func allows(have Role, need []Role) bool {
	for _, n := range need {
		if have == n || (have == RoleOperator && n == RoleUser) {
			return true
		}
	}
	return false
}
