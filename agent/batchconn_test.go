package agent

import (
	"bufio"
	"net"
	"testing"
)

// Between begin and end a batchConn holds what is written and writes it
// at end in one piece; otherwise it writes through.
func TestBatchConnHoldsWritesUntilEnd(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	bc := &batchConn{Conn: client, w: bufio.NewWriterSize(client, 1<<10)}
	got := make(chan []byte, 10)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := server.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()

	if _, err := bc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "hello" {
		t.Fatalf("written through: %q", b)
	}
	bc.begin()
	for _, s := range []string{"one ", "two ", "three"} {
		if _, err := bc.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case b := <-got:
		t.Fatalf("%q went out before end", b)
	default:
	}
	errc := make(chan error, 1)
	go func() { errc <- bc.end() }()
	if b := <-got; string(b) != "one two three" {
		t.Fatalf("batch went out as %q, want one write of %q", b, "one two three")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	client.Close()
	if _, ok := <-got; ok {
		t.Fatal("more was written")
	}
}
