package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
)

// A TLS connection writes each record (at most 16 KiB of data) to the
// socket with a write of its own: a replication stream of 1 GiB is 65,536
// writes, and as many TCP segments for the receiver to take in, each
// waking it. The streaming clients' connections (peerLong) batch the
// records of one write of the TLS connection into socket writes of up to
// streamBufferSize: the same records, encrypted the same way, in 16 times
// fewer writes and segments.

// On the accepting side, TLS reads a record at a time from the socket:
// one read for each 16 KiB of a stream. Under TLS, the mux's connections
// read from the socket through a buffer of acceptReadBuffer, so a read
// takes in whatever has arrived, several records, in one go.

// acceptReadBuffer is the read buffer under TLS of an accepted connection.
const acceptReadBuffer = 64 << 10

// readBufferedConn is a connection that reads through a buffer.
type readBufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func newReadBufferedConn(c net.Conn) *readBufferedConn {
	return &readBufferedConn{Conn: c, r: bufio.NewReaderSize(c, acceptReadBuffer)}
}

func (c *readBufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dialBatchedTLS dials addr with d and runs the TLS client handshake of
// conf on a connection that batches the records of each write.
func dialBatchedTLS(ctx context.Context, d *net.Dialer, conf *tls.Config, network, addr string) (net.Conn, error) {
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conf = conf.Clone()
	if conf.ServerName == "" {
		// As net/http does for its own TLS dials.
		if host, _, err := net.SplitHostPort(addr); err == nil {
			conf.ServerName = host
		}
	}
	bc := &batchConn{Conn: raw, w: bufio.NewWriterSize(raw, streamBufferSize)}
	tc := tls.Client(bc, conf)
	hctx, cancel := context.WithTimeout(ctx, peerTLSHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return &batchedTLSConn{Conn: tc, bc: bc}, nil
}

// batchedTLSConn is a TLS connection whose Write goes out in batches: the
// records it makes are held until the write has made them all (or the
// buffer is full), then written together.
type batchedTLSConn struct {
	*tls.Conn
	bc *batchConn
}

func (c *batchedTLSConn) Write(p []byte) (int, error) {
	c.bc.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.bc.end(); err == nil && ferr != nil {
		err = ferr
	}
	return n, err
}

// batchConn is the connection under the TLS connection: between begin
// and end it buffers what TLS writes; otherwise it writes through (the
// handshake, alerts, a key update answered while reading).
type batchConn struct {
	net.Conn

	mu    sync.Mutex
	w     *bufio.Writer
	batch bool
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batch {
		return b.w.Write(p)
	}
	if err := b.w.Flush(); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}

func (b *batchConn) begin() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batch = true
}

// end writes what was batched and goes back to writing through.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batch = false
	return b.w.Flush()
}
