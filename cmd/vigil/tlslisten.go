package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// handshakeListener hands net/http connections whose TLS handshake is
// already done, each on a short-lived goroutine of its own.
//
// net/http runs the handshake on the goroutine that then serves the
// connection for its whole life. The handshake (X25519MLKEM768 key
// exchange, certificate signature) grows that goroutine's stack to 16 or
// 32 KB, and the HTTP/2 serve loop it then parks in uses just over a
// quarter of 16 KB, so the collector never shrinks it back: at 10,000
// held agent connections that was 80 MB of stacks, and about as much
// again of heap the collector allowed itself on top (the heap goal
// counts stacks). Done here, the serving goroutine stays at 8 KB.
type handshakeListener struct {
	net.Listener // TCP
	config       *tls.Config
	timeout      time.Duration
	logger       *slog.Logger

	ctx       context.Context // canceled by Close: handshakes under way stop
	cancel    context.CancelFunc
	conns     chan net.Conn
	back      chan net.Conn // rejoined, waiting for Accept
	errs      chan error
	done      chan struct{}
	closeOnce sync.Once
}

// newHandshakeListener accepts TCP connections on ln and returns them from
// Accept as *tls.Conn once their handshake with config is done; a
// handshake taking longer than timeout is dropped.
func newHandshakeListener(ln net.Listener, config *tls.Config, timeout time.Duration, logger *slog.Logger) *handshakeListener {
	l := &handshakeListener{Listener: ln, config: config, timeout: timeout, logger: logger,
		conns: make(chan net.Conn), back: make(chan net.Conn, rejoinBacklog), errs: make(chan error), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.acceptLoop()
	return l
}

func (l *handshakeListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			// net/http retries after temporary errors (too many open
			// files) and stops at any other.
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() {
				continue
			}
			return
		}
		go l.handshake(c)
	}
}

func (l *handshakeListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.config)
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	// The deadline bounds a client that stalls mid-handshake, as
	// net/http's own handshake timeout does.
	c.SetDeadline(time.Now().Add(l.timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		l.logger.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	select {
	case l.conns <- tc:
	case <-l.done:
		tc.Close()
	}
}

// Accept returns the next connection whose handshake is done, or one
// handed back.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// rejoinBacklog is how many handed-back connections may wait for Accept:
// a live query hands back one per held agent within moments, and the
// goroutines answering them should not each wait for net/http's accept
// loop to come round.
const rejoinBacklog = 4096

// rejoin has Accept return c, a connection served before and hijacked
// (control's parked long polls), so that net/http serves it again. It
// reports false when the listener is closed.
func (l *handshakeListener) rejoin(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.back <- c:
		select {
		case <-l.done:
			l.drainBack() // Close may have drained before c came
		default:
		}
		return true
	case <-l.done:
		return false
	}
}

// drainBack closes the handed-back connections no Accept took.
func (l *handshakeListener) drainBack() {
	for {
		select {
		case c := <-l.back:
			c.Close()
		default:
			return
		}
	}
}

// Close stops accepting; handshakes under way are dropped, and handed
// back connections not yet accepted are closed.
func (l *handshakeListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.cancel()
		l.drainBack()
	})
	return l.Listener.Close()
}

// serverTLSConfig is the server's TLS configuration with HTTP/2 offered
// first, as http.Server.ServeTLS would set it: with "h2" in NextProtos,
// http.Server.Serve configures HTTP/2 for the connections the
// handshakeListener hands it.
func serverTLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// handshakeTimeout is net/http's: the server's ReadHeaderTimeout when no
// shorter read or write timeout is set.
func handshakeTimeout(s *http.Server) time.Duration {
	d := s.ReadHeaderTimeout
	for _, t := range []time.Duration{s.ReadTimeout, s.WriteTimeout} {
		if t > 0 && (d <= 0 || t < d) {
			d = t
		}
	}
	if d <= 0 {
		d = 10 * time.Second
	}
	return d
}

// http2Config sizes what each HTTP/2 connection keeps. Every agent holds
// one connection open, so per-connection memory is multiplied by the
// fleet. The framer keeps a read buffer as large as the largest frame it
// has read, and a client may send frames up to MaxReadFrameSize (1 MB by
// default, and Go's client sends a large body in frames of up to 512 KB):
// one large log batch would leave each connection holding that much; at
// 16 KB, the protocol's minimum, it comes in more frames instead.
func http2Config() *http.HTTP2Config {
	return &http.HTTP2Config{MaxReadFrameSize: 16 << 10}
}
