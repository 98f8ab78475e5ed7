package api

import (
	"errors"
	"testing"

	"github.com/runledger/runledger/domain"
)

// lying is a field whose decoding fails with an error that reads like
// encoding/json's unknown-field text.
type lying struct{}

func (*lying) UnmarshalJSON([]byte) error { return errors.New(`json: unknown field "worker_id"`) }

// jsonProblem names an unknown field by the error's type, not its text: a
// value that fails with the same words is not an unknown field (matching the
// text blamed "worker_id", a field the body holds and the struct knows).
func TestJSONProblemMatchesOnTypes(t *testing.T) {
	var dst struct {
		WorkerID string `json:"worker_id"`
		Note     lying  `json:"note"`
	}
	err := decodeJSON([]byte(`{"worker_id":"w","note":1}`), &dst)
	var verr *domain.ValidationError
	if errors.As(err, &verr) {
		t.Fatalf("a value's decoding error became a field problem: %v", err)
	}
	if err == nil {
		t.Fatal("no error")
	}
	for body, want := range map[string]string{
		`{"worker_id":"w","color":"red","size":1}`: "color",
		`{"Worker_ID":"w","size":1}`:               "size",
	} {
		err := decodeJSON([]byte(body), &struct {
			WorkerID string `json:"worker_id"`
		}{})
		if !errors.As(err, &verr) || len(verr.Fields) != 1 || verr.Fields[0].Field != want {
			t.Errorf("%s: %v, want the field %s named", body, err, want)
		}
	}
}
