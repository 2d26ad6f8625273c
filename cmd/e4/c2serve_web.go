package main

import (
	"context"
	"log/slog"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/web"
)

// mountWeb serves the web interface (package c2/web) under /ui/ on the
// API's HTTPS listener, and logs its address once the listener is up. Its
// live event streams end when ctx does, before the listener's graceful
// stop waits for them.
func mountWeb(ctx context.Context, srv *api.Server, svc *c2.Service, hub *api.EventHub, log *slog.Logger) error {
	h, err := web.New(web.Config{Service: svc, Access: srv.Access(), Events: hub, Logger: log})
	if err != nil {
		return err
	}
	srv.Mount(web.Prefix, h)
	context.AfterFunc(ctx, h.Close)
	go func() {
		select {
		case <-srv.Ready():
			log.Info("web interface listening: sign in with an API token", "addr", srv.HTTPAddr(), "path", web.Prefix)
		case <-ctx.Done():
		}
	}()
	return nil
}
