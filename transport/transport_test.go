package transport

import (
	"errors"
	"fmt"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"+/+", "a/b", true},
		{"+", "a/b", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"#", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	}
	for _, c := range cases {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range []string{"", "a/+", "a/#", "#"} {
		if err := ValidateTopic(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a+/b", "a/b#", "##"} {
		if err := ValidateFilter(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateFilter(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"a", "a/+/b", "#", "a/#", "+"} {
		if err := ValidateFilter(good); err != nil {
			t.Errorf("ValidateFilter(%q) = %v", good, err)
		}
	}
}

func TestPermanentErrors(t *testing.T) {
	transient := errors.New("connection refused")
	if IsPermanent(transient) || IsPermanent(nil) || Permanent(nil) != nil {
		t.Fatal("a plain error or nil counts as permanent")
	}
	refused := Permanent(errors.New("not authorized"))
	wrapped := fmt.Errorf("publish: %w", refused)
	if !IsPermanent(refused) || !IsPermanent(wrapped) || wrapped.Error() != "publish: not authorized" {
		t.Fatalf("a marked error is not permanent: %v", wrapped)
	}
	if Permanent(refused) != refused {
		t.Fatal("marking twice wraps twice")
	}
	if !IsPermanent(fmt.Errorf("x: %w", ErrTooLarge)) || !IsPermanent(ErrInvalidTopic) {
		t.Fatal("ErrTooLarge and ErrInvalidTopic are not permanent")
	}
	if errors.Unwrap(refused) == nil {
		t.Fatal("the marked error hides its cause")
	}
}
