// Command ferretdb runs FerretDB v1 (a MongoDB wire-protocol server) for local development and tests.
//
// Why a wrapper instead of `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: the module
// as published lacks build/version/version.txt (generated upstream at release time), so that binary
// panics at start (FerretDB issue #2982). The embeddable package skips that check when the main module
// is not FerretDB's own, and it disables telemetry by itself. ops/engines.sh builds this program once
// into .engines/bin/ferretdb.
//
// Two backends: PostgreSQL (`--handler=postgresql --postgresql-url=postgres://...`, FerretDB v1's main
// backend and ops/engines.sh's default) or SQLite (`--handler=sqlite --sqlite-dir=DIR`). The flags fall
// back to FERRETDB_HANDLER, FERRETDB_POSTGRESQL_URL and FERRETDB_SQLITE_DIR. The embeddable package
// exposes only these: FerretDB's experimental pushdown switches (--test-*) are not reachable from here;
// our patch's ordered pushdown is (--ordered-pushdown, on by default, see snapfix.patch).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
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
	handler := flag.String("handler", envOr("FERRETDB_HANDLER", "sqlite"), "backend: postgresql or sqlite (env FERRETDB_HANDLER)")
	pgURL := flag.String("postgresql-url", os.Getenv("FERRETDB_POSTGRESQL_URL"),
		"PostgreSQL URL for --handler=postgresql, e.g. postgres://user@127.0.0.1:5433/ferretdb (env FERRETDB_POSTGRESQL_URL)")
	dataDir := flag.String("sqlite-dir", os.Getenv("FERRETDB_SQLITE_DIR"),
		"directory for the SQLite databases with --handler=sqlite (created if missing; env FERRETDB_SQLITE_DIR)")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn or error")
	ordered := flag.Bool("ordered-pushdown", envOr("FERRETDB_SNAPFIX_ORDERED_PUSHDOWN", "1") == "1",
		"run a find whose filter translates exactly as one SQL query with its sort and limit (SnapFix patch; "+
			"assumes one scalar type per compared or sorted field and a C collation; env FERRETDB_SNAPFIX_ORDERED_PUSHDOWN)")
	flag.Parse()

	// The patched handler reads this once, at its first find (snapfix.patch, internal/handler/snapfix_ordered.go).
	pushdown := "0"
	if *ordered {
		pushdown = "1"
	}
	if err := os.Setenv("FERRETDB_SNAPFIX_ORDERED_PUSHDOWN", pushdown); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(2)
	}

	switch {
	case *handler == "sqlite" && *dataDir == "":
		fmt.Fprintln(os.Stderr, "ferretdb: --handler=sqlite needs --sqlite-dir")
		os.Exit(2)
	case *handler == "postgresql" && *pgURL == "":
		fmt.Fprintln(os.Stderr, "ferretdb: --handler=postgresql needs --postgresql-url")
		os.Exit(2)
	case *handler != "sqlite" && *handler != "postgresql":
		fmt.Fprintf(os.Stderr, "ferretdb: unknown --handler %q (postgresql or sqlite)\n", *handler)
		os.Exit(2)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad --log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(&quietEndSessions{Handler: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})})

	cfg := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
		Handler:  *handler,
	}
	backend := []any{"handler", *handler}

	if *handler == "sqlite" {
		dir, err := filepath.Abs(*dataDir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			logger.Error("cannot prepare data directory", "dir", *dataDir, "error", err)
			os.Exit(1)
		}

		// The SQLite handler takes a "file:" URI naming a directory; it must end with a slash.
		cfg.SQLiteURL = "file:" + strings.TrimSuffix(dir, "/") + "/"
		backend = append(backend, "sqlite", cfg.SQLiteURL)
	} else {
		cfg.PostgreSQLURL = *pgURL
		backend = append(backend, "postgresql", redactURL(*pgURL))
	}

	// Report the real FerretDB version (buildInfo's ferretdbVersion, startup log) instead of "unknown":
	// the embedded package cannot know it, our module's build info does.
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == "github.com/FerretDB/FerretDB" {
				version.Get().Version = dep.Version
			}
		}
	}

	f, err := ferretdb.New(cfg)
	if err != nil {
		logger.Error("cannot start FerretDB", "error", err)
		os.Exit(1)
	}

	// SIGTERM/SIGINT end Run cleanly: listeners and connections close, the backend is closed.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Info("FerretDB starting", append([]any{"version", version.Get().Version, "listen", *listen,
		"ordered_pushdown", *ordered}, backend...)...)
	if err := f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
	logger.Info("FerretDB stopped")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// redactURL hides a password in a connection URL before it is logged.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
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
