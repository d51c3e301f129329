package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Pod annotations the launcher reads.
const (
	// AnnotationLaunch names the program (a key of Config.Programs) a pod runs.
	AnnotationLaunch = "skewguard.dev/launch"
	// AnnotationICCURL overrides Config.ICCURL for one pod (given to it as PLT_ICC_URL).
	AnnotationICCURL = "skewguard.dev/icc-url"

	labelVersion = "plt.dev/version"
	labelApp     = "app.kubernetes.io/name"
	defaultPort  = 8080
)

// Config is the launcher's configuration file (written by hack/stack.sh into the stack dir).
type Config struct {
	// PodCIDR bounds the pod IPs the launcher acts on (and adds on lo).
	PodCIDR string `json:"podCIDR"`
	// LogDir receives one log file per pod: <namespace>_<name>.log.
	LogDir string `json:"logDir"`
	// StateFile records the addresses and processes the launcher owns, for -cleanup.
	StateFile string `json:"stateFile"`
	// DefaultProgram runs pods that name no program, by annotation or image.
	DefaultProgram string `json:"defaultProgram"`
	// ICCURL is given to pods as PLT_ICC_URL unless the pod's annotation overrides it.
	ICCURL string `json:"iccURL"`
	// Programs maps a program name to the local command that plays the pod's container.
	Programs map[string]Program `json:"programs"`
	// Images maps a container image repository (without tag or digest) to a program name.
	Images map[string]string `json:"images"`

	prefix netip.Prefix
}

// Program is a local command run once per pod.
type Program struct {
	Command []string          `json:"command"`
	Env     map[string]string `json:"env"`
	// PodHostname runs the command in its own UTS namespace whose hostname is the pod name, as
	// a kubelet would (Platformatic's agent takes its pod id from the hostname).
	PodHostname bool `json:"podHostname"`
	// ServiceAccountToken gives the process a token of the pod's ServiceAccount bound to the pod
	// (TokenRequest), as PLT_TEST_TOKEN and in the file named by SKEWGUARD_TOKEN_FILE.
	ServiceAccountToken bool `json:"serviceAccountToken"`
	// StartTimeout bounds the wait for the pod's port to answer.
	StartTimeout Duration `json:"startTimeout"`
}

// Duration reads "15s"-style JSON strings.
type Duration struct{ time.Duration }

// UnmarshalJSON parses a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"15s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// LoadConfig reads and validates the configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read launcher config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig validates a configuration, reporting every problem at once.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse launcher config: %w", err)
	}
	var problems []string
	p, err := netip.ParsePrefix(c.PodCIDR)
	if err != nil || !p.Addr().Is4() {
		problems = append(problems, fmt.Sprintf("podCIDR %q is not an IPv4 CIDR", c.PodCIDR))
	}
	c.prefix = p.Masked()
	if len(c.Programs) == 0 {
		problems = append(problems, "programs is empty")
	}
	for name, prog := range c.Programs {
		if len(prog.Command) == 0 {
			problems = append(problems, fmt.Sprintf("program %q has no command", name))
		}
	}
	if c.DefaultProgram != "" {
		if _, ok := c.Programs[c.DefaultProgram]; !ok {
			problems = append(problems, fmt.Sprintf("defaultProgram %q is not a program", c.DefaultProgram))
		}
	}
	for img, name := range c.Images {
		if _, ok := c.Programs[name]; !ok {
			problems = append(problems, fmt.Sprintf("image %q maps to unknown program %q", img, name))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("invalid launcher config: %s", strings.Join(problems, "; "))
	}
	return &c, nil
}

// ProgramFor picks the program a pod runs: its launch annotation, else the first container image
// that maps to a program (by repository in Images, or by the repository's last path element
// naming a program), else the default program.
func (c *Config) ProgramFor(pod *corev1.Pod) (string, error) {
	if name, ok := pod.Annotations[AnnotationLaunch]; ok {
		if _, known := c.Programs[name]; !known {
			return "", fmt.Errorf("annotation %s=%q names no program (known: %s)", AnnotationLaunch, name, strings.Join(c.programNames(), ", "))
		}
		return name, nil
	}
	for _, ctr := range pod.Spec.Containers {
		repo := imageRepository(ctr.Image)
		if name, ok := c.Images[repo]; ok {
			return name, nil
		}
		if _, ok := c.Programs[repo[strings.LastIndex(repo, "/")+1:]]; ok {
			return repo[strings.LastIndex(repo, "/")+1:], nil
		}
	}
	if c.DefaultProgram != "" {
		return c.DefaultProgram, nil
	}
	return "", fmt.Errorf("no %s annotation, no image mapped to a program, and no default program", AnnotationLaunch)
}

func (c *Config) programNames() []string {
	names := make([]string, 0, len(c.Programs))
	for n := range c.Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// imageRepository strips the digest and tag from an image reference.
func imageRepository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// PodIP returns the pod's IP when the launcher should run it: Running, not being deleted, with
// an IPv4 address inside the pod CIDR.
func (c *Config) PodIP(pod *corev1.Pod) (netip.Addr, bool) {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil || !c.prefix.Contains(ip) {
		return netip.Addr{}, false
	}
	return ip, true
}

// podPorts lists the pod's TCP container ports, first container first; 8080 when none is declared.
func podPorts(pod *corev1.Pod) []int {
	var ports []int
	for _, ctr := range pod.Spec.Containers {
		for _, p := range ctr.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				ports = append(ports, int(p.ContainerPort))
			}
		}
	}
	if len(ports) == 0 {
		ports = []int{defaultPort}
	}
	return ports
}

// ProcessEnv is the environment a pod's process gets: the literal env values of its first
// container, then the launcher's own variables (which win), then the program's.
func (c *Config) ProcessEnv(pod *corev1.Pod, prog Program, ip netip.Addr) map[string]string {
	env := map[string]string{}
	if len(pod.Spec.Containers) > 0 {
		for _, e := range pod.Spec.Containers[0].Env {
			if e.ValueFrom == nil {
				env[e.Name] = e.Value
			}
		}
	}
	ports := podPorts(pod)
	portStrs := make([]string, len(ports))
	for i, p := range ports {
		portStrs[i] = strconv.Itoa(p)
	}
	env["POD_NAME"] = pod.Name
	env["POD_NAMESPACE"] = pod.Namespace
	env["POD_UID"] = string(pod.UID)
	env["POD_IP"] = ip.String()
	env["HOST"] = ip.String()
	env["PORT"] = portStrs[0]
	env["PORTS"] = strings.Join(portStrs, ",")
	env["APP_VERSION"] = pod.Labels[labelVersion]
	env["APP_NAME"] = pod.Labels[labelApp]
	env["SERVICE_ACCOUNT"] = serviceAccountName(pod)
	icc := c.ICCURL
	if v, ok := pod.Annotations[AnnotationICCURL]; ok {
		icc = v
	}
	if icc != "" {
		env["PLT_ICC_URL"] = icc
	}
	for k, v := range prog.Env {
		env[k] = v
	}
	return env
}

func serviceAccountName(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}
