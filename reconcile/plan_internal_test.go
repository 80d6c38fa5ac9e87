package reconcile

import (
	"testing"
	"time"
)

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "in the future", 45 * time.Second: "45s ago", 12 * time.Minute: "12m ago",
		5 * time.Hour: "5h ago", 47 * time.Hour: "47h ago", 72 * time.Hour: "3d ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%v) = %q; want %q", d, got, want)
		}
	}
}
