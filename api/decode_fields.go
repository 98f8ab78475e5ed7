package api

import (
	"encoding/json"
	"reflect"
	"strings"
)

// unknownFieldError names a member of the request object that dst has no
// field for. encoding/json reports one only as text; this is its type.
type unknownFieldError struct{ field string }

func (e *unknownFieldError) Error() string { return "unknown field " + e.field }

// unknownField returns an *unknownFieldError for the first member of the JSON
// object body (in the body's order) that the struct dst points to does not
// name, matching as encoding/json does (the json tag or the field's name,
// case folded; embedded structs' fields count). A body that is not an object
// is left to the decoder, which says what is wrong with it.
func unknownField(body []byte, dst any) error {
	t := reflect.TypeOf(dst)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	known := jsonFieldNames(t.Elem(), nil)
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := tok.(string)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
		if !containsFold(known, name) {
			return &unknownFieldError{field: name}
		}
	}
	return nil
}

// jsonFieldNames appends the JSON names of t's exported fields to names.
func jsonFieldNames(t reflect.Type, names []string) []string {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case tag == "-":
		case f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct:
			names = jsonFieldNames(f.Type, names)
		case !f.IsExported():
		case tag != "":
			names = append(names, tag)
		default:
			names = append(names, f.Name)
		}
	}
	return names
}

func containsFold(names []string, name string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}
