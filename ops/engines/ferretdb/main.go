// Command ferretdb runs FerretDB v1 (a MongoDB wire-protocol server) for local development and tests.
//
// Why a wrapper instead of `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: the module
// as published lacks build/version/version.txt (generated upstream at release time), so that binary
// panics at start (FerretDB issue #2982). The embeddable package skips that check when the main module
// is not FerretDB's own, and it disables telemetry by itself. ops/engines.sh builds this program once
// into .engines/bin/ferretdb.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/FerretDB/FerretDB/build/version"
	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("sqlite-dir", "", "directory for the SQLite databases (required; created if missing)")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn or error")
	flag.Parse()

	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb: --sqlite-dir is required")
		os.Exit(2)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad --log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(&quietEndSessions{Handler: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})})

	dir, err := filepath.Abs(*dataDir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		logger.Error("cannot prepare data directory", "dir", *dataDir, "error", err)
		os.Exit(1)
	}

	// The SQLite handler takes a "file:" URI naming a directory; it must end with a slash.
	sqliteURL := "file:" + strings.TrimSuffix(dir, "/") + "/"

	// Report the real FerretDB version (buildInfo's ferretdbVersion, startup log) instead of "unknown":
	// the embedded package cannot know it, our module's build info does.
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == "github.com/FerretDB/FerretDB" {
				version.Get().Version = dep.Version
			}
		}
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		logger.Error("cannot start FerretDB", "error", err)
		os.Exit(1)
	}

	// SIGTERM/SIGINT end Run cleanly: listeners and connections close, SQLite files are closed.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Info("FerretDB starting", "version", version.Get().Version, "listen", *listen, "sqlite", sqliteURL)
	if err := f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
	logger.Info("FerretDB stopped")
}

// quietEndSessions drops one known, harmless warning. PyMongo sends endSessions whenever a client
// closes; FerretDB v1 has no such command and logs every failed response as a WARN pair, a
// "Response header" record then a "Response message" record with the whole reply (~1.7 KB), so a
// test suite would bury the log under them. FerretDB gives each connection its own logger (WithAttrs),
// and one connection logs the pair in sequence, so each handler instance holds back a response header
// until it has seen the message that follows it.
type quietEndSessions struct {
	slog.Handler

	mu      sync.Mutex
	pending *slog.Record
}

func (h *quietEndSessions) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()

	if r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, "Response header: ") {
		if h.pending != nil {
			_ = h.Handler.Handle(ctx, *h.pending)
		}
		held := r.Clone()
		h.pending = &held
		return nil
	}

	if p := h.pending; p != nil {
		h.pending = nil
		if strings.HasPrefix(r.Message, "Response message:") &&
			strings.Contains(r.Message, "no such command: 'endSessions'") {
			return nil
		}
		if err := h.Handler.Handle(ctx, *p); err != nil {
			return err
		}
	}

	return h.Handler.Handle(ctx, r)
}

func (h *quietEndSessions) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &quietEndSessions{Handler: h.Handler.WithAttrs(attrs)}
}

func (h *quietEndSessions) WithGroup(name string) slog.Handler {
	return &quietEndSessions{Handler: h.Handler.WithGroup(name)}
}
