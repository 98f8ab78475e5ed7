package arch

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/runledger/runledger"

// never lists, per package of the module, the packages (of the module or
// outside it) it must not depend on, directly or through another package.
// A prefix ending in "/" stands for every package below it. The reasons
// are docs/ARCHITECTURE.md's.
var never = map[string][]string{
	// The domain is pure: no I/O, nothing of the module.
	"domain": {module + "/"},
	// The log knows the domain and nothing that reads or drives it.
	"eventstore": {"runs", "projections", "feed", "audit", "api", "reaper", "webhooks", "cmd/", "internal/demo"},
	// The application layer drives the log; the read side and HTTP are above it.
	"runs": {"projections", "feed", "audit", "api", "reaper", "webhooks", "cmd/"},
	// Folds of the log: never the read models or the feed.
	"audit": {"projections", "feed", "runs", "api", "reaper", "webhooks", "cmd/"},
	// The change feed is below the read side: projections publish to it.
	"feed": {"projections", "runs", "audit", "api", "reaper", "webhooks", "cmd/",
		"github.com/ThreeDotsLabs/"},
	"projections": {"runs", "audit", "api", "reaper", "webhooks", "cmd/"},
	"webhooks":    {"runs", "audit", "api", "reaper", "cmd/"},
	"reaper":      {"projections", "feed", "audit", "api", "webhooks", "cmd/"},
	"api":         {"cmd/", "internal/demo"},
	// Clients of the HTTP contract only.
	"api/client":    {module + "/"},
	"internal/demo": {"api", "eventstore", "runs", "projections", "feed", "audit", "reaper", "webhooks", "domain", "cmd/"},
	// The schema does not depend on the code that uses it (it shares the
	// advisory-lock keys of internal/advisory, nothing else).
	"migrations": {"domain", "eventstore", "runs", "projections", "feed", "audit", "api", "reaper", "webhooks", "cmd/"},
}

// onlyImportedBy lists outside packages that exactly one package of the
// module may import directly: watermill, its router and watermill-sql's
// subscriber and offsets schema are projections' business alone (others
// run a consumer group through projections.Consumer).
var onlyImportedBy = map[string]string{
	"github.com/ThreeDotsLabs/watermill":                "projections",
	"github.com/ThreeDotsLabs/watermill/message":        "projections",
	"github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql": "projections",
}

type listed struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func goList(t *testing.T) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rel names a package of the module by its path inside it ("" for others).
func rel(path string) string {
	if path == module {
		return "."
	}
	if after, ok := strings.CutPrefix(path, module+"/"); ok {
		return after
	}
	return ""
}

// forbidden reports whether dep is one of rules' entries.
func forbidden(dep string, rules []string) bool {
	for _, r := range rules {
		full := r
		if !strings.Contains(r, ".") { // a package of the module
			full = module + "/" + r
		}
		if strings.HasSuffix(full, "/") {
			if strings.HasPrefix(dep, full) || dep+"/" == full {
				return true
			}
			continue
		}
		if dep == full {
			return true
		}
	}
	return false
}

func TestNoPackageImportsWhatItMustNever(t *testing.T) {
	pkgs := goList(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		name := rel(p.ImportPath)
		seen[name] = true
		rules, ok := never[name]
		if !ok {
			continue
		}
		for _, dep := range p.Deps {
			if forbidden(dep, rules) {
				t.Errorf("%s depends on %s (directly or through another package); it must never", name, dep)
			}
		}
	}
	for name := range never {
		if !seen[name] {
			t.Errorf("rule for %s, which go list does not know: a package moved without its rule", name)
		}
	}
}

func TestOutsidePackagesHaveOneImporter(t *testing.T) {
	for _, p := range goList(t) {
		for _, imp := range p.Imports {
			owner, ok := onlyImportedBy[imp]
			if ok && rel(p.ImportPath) != owner {
				t.Errorf("%s imports %s; only %s may", rel(p.ImportPath), imp, owner)
			}
		}
	}
}

// Every package says in its doc comment what it owns and what it must
// never import, so the rules above are written where a reader looks first.
func TestEveryPackageHasADocComment(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, doc, _ := strings.Cut(line, "\t")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("%s has no package doc comment", rel(path))
		}
	}
}
