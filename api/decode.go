package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

// decodeBody strictly decodes one JSON object into dst: the content type must
// be JSON, the body at most 64 KiB, unknown fields and trailing data are
// refused, and a wrong type names its field. With allowEmpty an empty body
// leaves dst as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return newProblem(CodeBodyTooLarge, "request body exceeds 64 KiB")
		}
		return newProblem(CodeInvalidRequest, "could not read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return newProblem(CodeInvalidRequest, "request body is empty; a JSON object is required")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" || !allowEmpty {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != jsonMediaType {
			return newProblem(CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	return decodeJSON(body, dst)
}

// decodeJSON is the strict decoder behind decodeBody (fuzzed on its own).
// An unknown top-level field is the problem it reports first; looking for
// one (unknownField) costs a second pass over the body, so it is only done
// when the strict decode failed: one that succeeded saw no unknown field.
func decodeJSON(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields() // a field unknownField cannot see (nested) still fails
	if err := dec.Decode(dst); err != nil {
		if unknown := unknownField(body, dst); unknown != nil {
			return jsonProblem(unknown)
		}
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

func jsonProblem(err error) error {
	var (
		typeErr *json.UnmarshalTypeError
		syntax  *json.SyntaxError
	)
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return newProblem(CodeInvalidRequest, "request body must be a JSON object")
		}
		return fieldProblem(field, fmt.Sprintf("must be %s", jsonTypeName(typeErr.Type.Kind().String())))
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return newProblem(CodeInvalidRequest, "request body is not valid JSON")
	}
	var unknown *unknownFieldError
	if errors.As(err, &unknown) {
		return fieldProblem(unknown.field, "is not a known field")
	}
	return newProblem(CodeInvalidRequest, "request body is not valid JSON")
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64", "int32":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	}
	return "of another type"
}

// fieldProblem is a 400 validation problem naming one field.
func fieldProblem(field, reason string) error {
	return domain.Invalid(field, reason)
}

// required returns a validation error naming the first missing field.
func required(fields ...any) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if isNil(fields[i+1]) {
			return fieldProblem(fields[i].(string), "is required")
		}
	}
	return nil
}

func isNil(v any) bool {
	switch p := v.(type) {
	case *int:
		return p == nil
	case *string:
		return p == nil
	}
	return v == nil
}

// parseRunID accepts only the canonical 36-character UUID form.
func parseRunID(s, field string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 || id == uuid.Nil {
		return uuid.Nil, fieldProblem(field, "must be a UUID like 7f1c2e4a-…")
	}
	return id, nil
}

// optionalDuration parses a Go duration string ("15m", "90s") of field; nil is 0.
func optionalDuration(field string, v *string) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	d, err := time.ParseDuration(*v)
	if err != nil {
		return 0, fieldProblem(field, "must be a duration like \"15m\" or \"90s\"")
	}
	return d, nil
}
