package reconcile

import (
	"testing"
	"time"
)

func TestParseCreationTime(t *testing.T) {
	out := "x\n\tName: \t\t\tx\n\tUUID: \t\t\t8fc4a2b8-43b2-2f41-9d60-c60416987f43\n\tCreation time: \t\t2026-11-29 19:53:47 +0100\n\tSend time: \t\t2026-11-29 19:53:47 +0000\n"
	got, err := parseCreationTime([]byte(out))
	if want := time.Date(2026, 11, 29, 18, 53, 47, 0, time.UTC); err != nil || !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("want %v in UTC, got %v, %v", want, got, err)
	}
	if _, err := parseCreationTime([]byte("x\n\tName: x\n")); err == nil {
		t.Fatal("no creation time line: want an error")
	}
}
