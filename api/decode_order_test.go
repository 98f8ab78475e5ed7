package api

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// decodeJSONUnknownFirst is decodeJSON as it was: the pass that looks for
// an unknown field always ran first.
func decodeJSONUnknownFirst(body []byte, dst any) error {
	if err := unknownField(body, dst); err != nil {
		return jsonProblem(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonProblem(err)
	}
	if dec.More() {
		return newProblem(CodeInvalidRequest, "request body must hold a single JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return newProblem(CodeInvalidRequest, "request body must hold a single JSON object")
	}
	return nil
}

// TestDecodeJSONAnswersAsWhenUnknownFieldsCameFirst: looking for an
// unknown field only after a failed decode changes no answer: not the
// problem reported, not the decoded value.
func TestDecodeJSONAnswersAsWhenUnknownFieldsCameFirst(t *testing.T) {
	keys := []string{`"completed_calls"`, `"failed_calls"`, `"Completed_Calls"`, `"bogus"`, `"total_calls"`, `"worker_id"`, `"run_id"`}
	vals := []string{`1`, `-1`, `"1"`, `null`, `1.5`, `1e99`, `{}`, `[]`, `"w"`, `true`, ``}
	r := rand.New(rand.NewPCG(3, 4))
	for range 4000 {
		var b strings.Builder
		b.WriteString("{")
		for i := range r.IntN(4) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(keys[r.IntN(len(keys))] + ":" + vals[r.IntN(len(vals))])
		}
		b.WriteString([]string{"}", "}", "} {}", "", "}x"}[r.IntN(5)])
		body := []byte(b.String())
		for _, newDst := range []func() any{func() any { return &progressRequest{} }, func() any { return &startRequest{} }} {
			got, want := newDst(), newDst()
			gotErr, wantErr := decodeJSON(body, got), decodeJSONUnknownFirst(body, want)
			if !sameProblem(gotErr, wantErr) {
				t.Fatalf("%s into %T: %v, was %v", body, got, gotErr, wantErr)
			}
			if gotErr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%s into %T: decoded %+v, was %+v", body, got, got, want)
			}
		}
	}
}

func sameProblem(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return fmt.Sprintf("%T %v", a, a) == fmt.Sprintf("%T %v", b, b)
}
