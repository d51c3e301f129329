package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// EventReportingController is the reportingController of the Events skewguard records.
const EventReportingController = "skewguard.dev/skewguard"

// ErrNoDeployment is returned (wrapped) by RecordEvent when no Deployment runs the version.
var ErrNoDeployment = errors.New("no Deployment runs the version")

// ErrInvalidEvent is returned (wrapped) by RecordEvent for an event type or reason the API
// would refuse.
var ErrInvalidEvent = errors.New("invalid event")

// maxEventNote is the longest note the API server accepts on an events.k8s.io/v1 Event.
const maxEventNote = 1024

// RecordEvent records an events.k8s.io/v1 Event regarding each Deployment that runs version of
// app (see Owners), so that `kubectl describe deployment` and `kubectl events` show what
// skewguard did to it. eventType is Normal or Warning; reason is a short CamelCase word. The
// Event's name is derived from the Deployment's UID, the reason and the message, so recording
// the same thing again (an activity retry) finds it already there and succeeds. It returns an
// error wrapping ErrNoDeployment when no Deployment runs the version.
func (w Workloads) RecordEvent(ctx context.Context, namespace, app, version, eventType, reason, message string) error {
	if eventType != corev1.EventTypeNormal && eventType != corev1.EventTypeWarning {
		return fmt.Errorf("%w: type %q must be %s or %s", ErrInvalidEvent, eventType, corev1.EventTypeNormal, corev1.EventTypeWarning)
	}
	if reason == "" || len(reason) > 128 {
		return fmt.Errorf("%w: reason %q must be 1 to 128 characters", ErrInvalidEvent, reason)
	}
	deps, err := w.ownerDeployments(ctx, namespace, app, version)
	if err != nil {
		return err
	}
	note := truncateUTF8(message, maxEventNote)
	recorded := 0
	for _, d := range deps {
		if runsOther(d, app, version) != "" {
			continue
		}
		recorded++
		ev := &eventsv1.Event{
			ObjectMeta:          metav1.ObjectMeta{Name: eventName(d.Name, string(d.UID), reason, message), Namespace: namespace},
			EventTime:           metav1.NowMicro(),
			ReportingController: EventReportingController,
			ReportingInstance:   reportingInstance(),
			Action:              reason,
			Reason:              reason,
			Type:                eventType,
			Note:                note,
			Regarding: corev1.ObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Namespace: namespace,
				Name: d.Name, UID: d.UID},
		}
		_, err := w.Client.EventsV1().Events(namespace).Create(ctx, ev, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("record Event %s on Deployment %s/%s: %w", reason, namespace, d.Name, err)
		}
	}
	if recorded == 0 {
		return fmt.Errorf("event %s for %s/%s@%s: %w", reason, namespace, app, version, ErrNoDeployment)
	}
	return nil
}

// eventName is <deployment>.<16 hex digits of a hash of what the Event says>.
func eventName(deployment, uid, reason, message string) string {
	sum := sha256.Sum256([]byte(uid + "\x00" + reason + "\x00" + message))
	suffix := "." + hex.EncodeToString(sum[:])[:16]
	if room := validation.DNS1123SubdomainMaxLength - len(suffix); len(deployment) > room {
		deployment = strings.TrimRight(deployment[:room], "-.") // a name part ends alphanumeric
	}
	return deployment + suffix
}

// reportingInstance names this process (the API server requires one, at most 128 characters).
func reportingInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return truncateUTF8(EventReportingController+"-"+host, 128)
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
