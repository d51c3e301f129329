package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/gorilla/mux"
	corev1 "k8s.io/api/core/v1"

	"github.com/skewguard/skewguard/internal/apiwire"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/metrics"
)

// frameLimit bounds one frame from the agent (it sends subscribe commands and job replies).
const frameLimit = 64 << 10

// Command is a WebSocket frame with a command: the agent sends {"command":"subscribe",
// "topic":"/config"}; skewguard answers {"command":"ack"}.
type Command struct {
	Command string `json:"command"`
	Topic   string `json:"topic,omitempty"`
}

var ackFrame = []byte(`{"command":"ack"}`)

// updates is the agent's update channel, GET /api/updates/applications/{applicationId}
// ?runtimeId=…: subscribe is acknowledged (without an ack the agent never sends its state),
// the connection is kept alive with pings, and nothing else is pushed: skewguard has no
// configuration to hand out. A reconnect after a control-plane restart goes through detection
// again, so a version is found even when the pod watch is off.
func (s *Server) updates(w http.ResponseWriter, r *http.Request) {
	appID := mux.Vars(r)["applicationId"]
	if p := apiwire.CheckUpdatesParams(appID, r.URL.Query().Get("runtimeId")); p != nil {
		writeProblem(w, p)
		return
	}
	caller, ok := s.podCaller(w, r)
	if !ok {
		return
	}
	var pod *corev1.Pod
	if caller != nil {
		if pod, ok = s.resolvePod(w, caller.Name, caller); !ok {
			return
		}
		if app := pod.Labels[detect.LabelApp]; app != "" && detect.ApplicationID(pod.Namespace, app) != appID {
			writeError(w, http.StatusForbidden, CodeApplicationMismatch,
				"application %q is not the application of pod %s/%s", appID, pod.Namespace, pod.Name)
			return
		}
	}

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		s.log.Debug("websocket upgrade failed", "error", err)
		return // Accept has answered
	}
	s.sockets.Add(1)
	defer s.sockets.Done()
	metrics.AgentConnections.Inc()
	defer metrics.AgentConnections.Dec()
	conn.SetReadLimit(frameLimit)

	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	go func() {
		select {
		case <-s.done:
			_ = conn.Close(websocket.StatusGoingAway, "skewguard is shutting down")
			cancel()
		case <-ctx.Done():
		}
	}()
	go s.keepAlive(ctx, conn, cancel)
	if pod != nil {
		go s.redetect(ctx, pod) // never delays the ack the agent waits for
	}

	log := s.log.With("applicationId", appID, "runtimeId", r.URL.Query().Get("runtimeId"))
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			if status := websocket.CloseStatus(err); status == -1 && ctx.Err() == nil {
				log.Debug("agent websocket ended", "error", err)
			}
			_ = conn.CloseNow()
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		var cmd Command
		if json.Unmarshal(msg, &cmd) != nil || cmd.Command == "" {
			log.Debug("ignored agent frame", "bytes", len(msg))
			continue
		}
		if cmd.Command != "subscribe" {
			log.Debug("ignored agent command", "command", cmd.Command)
			continue
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err = conn.Write(wctx, websocket.MessageText, ackFrame)
		wcancel()
		if err != nil {
			_ = conn.CloseNow()
			return
		}
	}
}

// keepAlive pings the agent; a missing pong ends the connection (the agent reconnects).
func (s *Server) keepAlive(ctx context.Context, conn *websocket.Conn, cancel context.CancelFunc) {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, pcancel := context.WithTimeout(ctx, min(s.opts.PingInterval, 10*time.Second))
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					s.log.Debug("agent websocket ping failed", "error", err)
				}
				_ = conn.Close(websocket.StatusPolicyViolation, "pong timeout")
				cancel()
				return
			}
		}
	}
}

// redetect runs detection for a reconnecting pod; failures are retried in the background and
// never cost the agent its connection.
func (s *Server) redetect(ctx context.Context, pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if res, err := s.opts.Detector.Detect(ctx, pod, detect.SourceWebSocket, detect.Hint{}); err != nil ||
		res.Outcome == detect.OutcomeNoService {
		s.retry(pod)
	}
}
