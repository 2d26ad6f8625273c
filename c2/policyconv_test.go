package c2

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// fillFields sets every field of the struct v points to a non-zero value
// derived from its index, so that a conversion that drops a field shows.
func fillFields(t *testing.T, v any) {
	t.Helper()
	s := reflect.ValueOf(v).Elem()
	for i := range s.NumField() {
		f := s.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(s.Type().Field(i).Name)
		case reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Uint64:
			f.SetUint(uint64(i + 1))
		case reflect.Struct:
			if f.Type() != reflect.TypeOf(time.Time{}) {
				t.Fatalf("%s.%s: no filler for %s", s.Type(), s.Type().Field(i).Name, f.Type())
			}
			f.Set(reflect.ValueOf(time.Unix(int64(i+1), 0).UTC()))
		default:
			t.Fatalf("%s.%s: no filler for %s", s.Type(), s.Type().Field(i).Name, f.Type())
		}
	}
}

// fieldValues lists a struct's fields as name=value, the same for a c2
// type and its store twin when the conversion kept every field.
func fieldValues(v any) []string {
	s := reflect.ValueOf(v)
	out := make([]string, s.NumField())
	for i := range s.NumField() {
		out[i] = fmt.Sprintf("%s=%v", s.Type().Field(i).Name, s.Field(i))
	}
	return out
}

// checkSame fails unless the c2 value and its store twin have the same
// fields with the same values.
func checkSame(t *testing.T, c2Value, storeValue any) {
	t.Helper()
	if got, want := fieldValues(c2Value), fieldValues(storeValue); !slices.Equal(got, want) {
		t.Errorf("%T and %T differ:\n%v\n%v", c2Value, storeValue, got, want)
	}
}

// TestPolicyConversionsKeepEveryField checks that the service's policy,
// rotation and filter types carry every field of the store's, in the same
// order, through the conversions of policyconv.go (a field added to a
// store type needs its twin in c2's).
func TestPolicyConversionsKeepEveryField(t *testing.T) {
	var p Policy
	fillFields(t, &p) // a time.Duration is an int64: filled too
	checkSame(t, p, p.toStore())
	if back := policyFromStore(p.toStore()); back != p {
		t.Errorf("policy round trip: got %+v, want %+v", back, p)
	}
	var r store.Rotation
	fillFields(t, &r)
	checkSame(t, rotationFromStore(r), r)
	var f RotationFilter
	fillFields(t, &f)
	checkSame(t, f, f.toStore())
}
