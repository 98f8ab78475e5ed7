package audit_test

import (
	"testing"

	"github.com/runledger/runledger/internal/pgtest"
)

// TestMain starts the private PostgreSQL cluster the tests' databases live in.
func TestMain(m *testing.M) { pgtest.Main(m) }
