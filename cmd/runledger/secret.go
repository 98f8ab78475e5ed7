package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/runledger/runledger/api"
)

// secretEnv is the environment variable that holds the signing secret
// (never a flag: flags show up in ps).
const secretEnv = "RUNLEDGER_AUTH_SECRET"

// devSecretFile is where `runledger dev` keeps its generated secret, inside
// its data directory.
const devSecretFile = "auth-secret"

// signingSecret is the secret that signs tokens, and where it came from:
// RUNLEDGER_AUTH_SECRET, or else the secret `runledger dev` wrote into
// dataDir. It returns an error that says how to get one when neither exists.
func signingSecret(dataDir string) (secret, source string, err error) {
	if s := os.Getenv(secretEnv); s != "" {
		return s, "the environment (" + secretEnv + ")", nil
	}
	path := filepath.Join(dataDir, devSecretFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("no secret to sign tokens with: set %s, or start `make run` first (it writes %s): %w", secretEnv, path, err)
	}
	return strings.TrimSpace(string(b)), path, nil
}

// devSecret reads the dev secret at path, creating a random one on first use.
func devSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= api.MinSecretLen {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(raw)
	return secret, os.WriteFile(path, []byte(secret+"\n"), 0o600)
}
