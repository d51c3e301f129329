{{/*
The rules of skewguard's own rights on namespaced objects: exactly the calls it makes in the
namespaces it watches, and nothing more (no secrets, no wildcards). Deleting Deployments exists only
with auto_cleanup; creating Services (adoption) and Gateway API rights only with skew protection
enabled; deleting Services with either (auto_cleanup's Services, or the adopted versions' own), so
each right follows the setting that uses it. With config.namespaces empty they are part of the ClusterRole; otherwise they
are a Role in each listed namespace (templates/role.yaml).
*/}}
{{- define "skewguard.namespacedRules" -}}
{{- $sp := .Values.services.icc.skew_protection -}}
{{- $on := .Values.services.icc.features.skew_protection.enable -}}
# Version detection: pod labels (informer), the version's Service and its ready endpoints.
# Adoption (with skew protection; a Deployment annotated plt.dev/adopt=true): create skewguard's
# own Service <app>-skew-<version> for the adopted pods, and delete it when that version retires,
# whether or not auto_cleanup deletes the labelled versions' Services.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"{{ if $on }}, "create"{{ end }}{{ if or $on $sp.auto_cleanup }}, "delete"{{ end }}]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# Expiry: scale an expired version to zero (or, with auto_cleanup, delete it). The Deployments
# that run a version are also found through its pods' and ReplicaSets' owner references.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"{{ if $sp.auto_cleanup }}, "delete"{{ end }}]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "update", "patch"]
# ReplicaSets: which Deployment runs a pod (detection orders versions found together by it;
# retire scales what really runs the version).
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch"]
# Events on a version's Deployments, telling what skewguard did to it.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.services.icc.features.skew_protection.enable }}
# Routing: the HTTPRoutes skewguard owns in the app's namespace (and, before retiring a version,
# whether one of them still references its Service).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- end }}
{{- end -}}

{{/*
The rules that are cluster-scoped whatever the namespaces: authentication and authorization
reviews have no namespace.
*/}}
{{- define "skewguard.clusterScopedRules" -}}
# Authentication of registering pods and API callers, and authorization of API callers.
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}

