package reconcile

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// sizesWriter records the size of every write.
type sizesWriter struct {
	bytes.Buffer
	sizes []int
}

func (w *sizesWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.Buffer.Write(p)
}

// copyFilled writes full buffers, whatever pieces the source reads in,
// and the rest at the end.
func TestCopyFilledWritesFullBuffers(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16,000 bytes
	var w sizesWriter
	n, err := copyFilled(&w, iotest.HalfReader(bytes.NewReader(data)), make([]byte, 4096))
	if err != nil || n != int64(len(data)) || !bytes.Equal(w.Bytes(), data) {
		t.Fatalf("copyFilled = %d, %v; copied %d bytes equal %v", n, err, w.Len(), bytes.Equal(w.Bytes(), data))
	}
	want := []int{4096, 4096, 4096, 16000 - 3*4096}
	if len(w.sizes) != len(want) {
		t.Fatalf("writes %v, want %v", w.sizes, want)
	}
	for i := range want {
		if w.sizes[i] != want[i] {
			t.Fatalf("writes %v, want %v", w.sizes, want)
		}
	}
}

// A failing source: what was read is written, and the error is returned,
// not taken for the end of the stream.
func TestCopyFilledStopsAtError(t *testing.T) {
	boom := errors.New("boom")
	src := io.MultiReader(bytes.NewReader(make([]byte, 5000)), iotest.ErrReader(boom))
	var w sizesWriter
	n, err := copyFilled(&w, src, make([]byte, 4096))
	if !errors.Is(err, boom) || n != 5000 || w.Len() != 5000 {
		t.Fatalf("copyFilled = %d, %v (wrote %d); want 5000, boom", n, err, w.Len())
	}
}
