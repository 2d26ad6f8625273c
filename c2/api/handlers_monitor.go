package api

import (
	"context"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// The handlers of the monitor's calls (c2.Service.MonitorStats and
// MonitorTop); the monitor itself is package c2/monitor.

func (h *handlers) GetMonitorStats(ctx context.Context, _ *c2pb.Empty) (*c2pb.MonitorStats, error) {
	st, err := h.svc.MonitorStats(ctx)
	if err != nil {
		return nil, err
	}
	return &c2pb.MonitorStats{Since: timestamp(st.Since), Results: st.Results, Ignored: st.Ignored, Dropped: st.Dropped, Filters: st.Topics}, nil
}

func (h *handlers) ListMonitorTop(ctx context.Context, req *c2pb.ListMonitorTopRequest) (*c2pb.ListMonitorTopResponse, error) {
	if req.Limit < 0 {
		return nil, invalid("limit must not be negative")
	}
	if err := checkText("by", req.By); err != nil {
		return nil, err
	}
	if err := checkText("result", req.Result); err != nil {
		return nil, err
	}
	top, err := h.svc.MonitorTop(ctx, req.By, req.Result, int(req.Limit))
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListMonitorTopResponse{Entries: make([]*c2pb.MonitorTopEntry, len(top))}
	for i, e := range top {
		out.Entries[i] = &c2pb.MonitorTopEntry{Key: e.Key, Count: e.Count, Error: e.Error, ByResult: e.ByResult}
	}
	return out, nil
}
