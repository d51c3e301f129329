// Command launcher stands in for a kubelet in the local test stack (test and demo only): for each
// Running pod of the kwok cluster it adds the pod IP on lo and runs one real local process bound
// to podIP:containerPort, reports the pod Ready once that port answers, and stops the process and
// removes the IP when the pod goes away. Which program a pod runs comes from the pod itself (the
// skewguard.dev/launch annotation or its image), mapped to a local command by the config file.
//
//	launcher -kubeconfig FILE -config launcher.json -listen 127.0.0.1:16447
//	launcher -cleanup -config launcher.json   # undo what a launcher that died left behind
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err := run(); err != nil {
		slog.Error("launcher failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the launcher's identity")
	configPath := flag.String("config", "", "launcher configuration (JSON)")
	listen := flag.String("listen", "127.0.0.1:16447", "address of /healthz and /pods")
	cleanup := flag.Bool("cleanup", false, "stop the pod processes and remove the addresses recorded in the state file, then exit")
	flag.Parse()

	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return err
	}
	state, err := openState(cfg.StateFile)
	if err != nil {
		return err
	}
	// Whatever a previous launcher left behind is stale now: its pods are re-launched below.
	if err := state.cleanup(); err != nil || *cleanup {
		return err
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("create pod log dir: %w", err)
	}

	restCfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig %s: %w", *kubeconfig, err)
	}
	restCfg.QPS, restCfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	podInformer := factory.Core().V1().Pods()
	l := newLauncher(cfg, client, podInformer.Lister(), newAddresses(state), state)
	if _, err := podInformer.Informer().AddEventHandler(l.handler()); err != nil {
		return fmt.Errorf("pod event handler: %w", err)
	}

	var synced atomic.Bool
	srv, err := serveStatus(*listen, &synced, l)
	if err != nil {
		return err
	}
	defer srv.Close()

	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		l.shutdown()
		return errors.New("pod informer did not sync")
	}
	synced.Store(true)
	slog.Info("launcher running", "podCIDR", cfg.PodCIDR, "listen", *listen)
	l.runWorkers(ctx, 4)
	slog.Info("launcher stopping: stopping pod processes and removing addresses")
	l.shutdown()
	factory.Shutdown()
	return nil
}

func serveStatus(address string, synced *atomic.Bool, l *launcher) (*http.Server, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", address, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !synced.Load() {
			http.Error(w, "pod cache not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /pods", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(l.snapshot())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("status server", "err", err)
		}
	}()
	return srv, nil
}
