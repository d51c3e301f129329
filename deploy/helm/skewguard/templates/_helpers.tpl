{{/* Name of the chart, for the app.kubernetes.io/name label. */}}
{{- define "skewguard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of the release's objects: the release name when it already contains the chart name (a
release called "skewguard" gives a Service reachable as skewguard.<namespace>.svc), else both.
*/}}
{{- define "skewguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "skewguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "skewguard.labels" -}}
helm.sh/chart: {{ include "skewguard.chart" . }}
{{ include "skewguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: skewguard
{{- end -}}

{{- define "skewguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "skewguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "skewguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "skewguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "skewguard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* PLT_SKEW_GATEWAY_PARENT_REFS: "namespace/name[:sectionName]", comma separated. */}}
{{- define "skewguard.parentRefs" -}}
{{- $refs := list -}}
{{- range $i, $ref := .Values.gateway.parentRefs -}}
{{- $ns := required (printf "gateway.parentRefs[%d].namespace is required" $i) $ref.namespace -}}
{{- $name := required (printf "gateway.parentRefs[%d].name is required" $i) $ref.name -}}
{{- $s := printf "%s/%s" $ns $name -}}
{{- if $ref.sectionName -}}
{{- $s = printf "%s:%s" $s $ref.sectionName -}}
{{- end -}}
{{- $refs = append $refs $s -}}
{{- end -}}
{{- join "," $refs -}}
{{- end -}}

{{/*
Checks that span several values, so a bad combination fails at install rather than at start-up.
*/}}
{{- define "skewguard.validate" -}}
{{- if not (has .Values.mode (list "split" "combined")) -}}
{{- fail (printf "mode must be split or combined, got %q" .Values.mode) -}}
{{- end -}}
{{- if and .Values.services.icc.features.skew_protection.enable (empty .Values.gateway.parentRefs) -}}
{{- fail "services.icc.features.skew_protection.enable is true: set gateway.parentRefs to the Gateway(s) the HTTPRoutes attach to" -}}
{{- end -}}
{{- $sp := .Values.services.icc.skew_protection -}}
{{- if lt (int64 $sp.http_max_alive_ms) (int64 $sp.http_grace_period_ms) -}}
{{- fail (printf "services.icc.skew_protection.http_max_alive_ms (%d) is shorter than http_grace_period_ms (%d)" (int64 $sp.http_max_alive_ms) (int64 $sp.http_grace_period_ms)) -}}
{{- end -}}
{{- $db := 0 -}}
{{- range list .Values.postgresql.existingSecret .Values.postgresql.url .Values.postgresql.host -}}
{{- if . }}{{ $db = add1 $db }}{{ end -}}
{{- end -}}
{{- if gt $db 1 -}}
{{- fail "set only one of postgresql.existingSecret, postgresql.url and postgresql.host" -}}
{{- end -}}
{{- with .Values.temporal.tls -}}
{{- if and .secretName (ne (empty .certKey) (empty .keyKey)) -}}
{{- fail "temporal.tls.certKey and temporal.tls.keyKey: set both (mTLS) or neither" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.tls.secretName .Values.tls.certManager.issuerRef.name -}}
{{- fail "set only one of tls.secretName (an existing Secret) and tls.certManager.issuerRef (a cert-manager Certificate)" -}}
{{- end -}}
{{- end -}}

{{/* TLS of the API port: the Secret holding tls.crt and tls.key, and where it is mounted. */}}
{{- define "skewguard.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "skewguard.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{- define "skewguard.tlsMountPath" -}}/etc/skewguard/tls{{- end -}}

{{/* The certificate's DNS names: the Service's, short and qualified. */}}
{{- define "skewguard.tlsDNSNames" -}}
{{- $svc := include "skewguard.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/* The scheme agents and probes use on the API port. */}}
{{- define "skewguard.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* The environment of every container: the ConfigMap, then the database settings. */}}
{{- define "skewguard.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "skewguard.fullname" . }}
{{- if or .Values.postgresql.existingSecret .Values.postgresql.url (and .Values.postgresql.host .Values.postgresql.passwordSecret) .Values.extraEnv }}
env:
{{- if .Values.postgresql.existingSecret }}
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.postgresql.existingSecret }}
        key: {{ .Values.postgresql.existingSecretKey }}
{{- else if .Values.postgresql.url }}
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "skewguard.fullname" . }}-database
        key: DATABASE_URL
{{- else if and .Values.postgresql.host .Values.postgresql.passwordSecret }}
  - name: PGPASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ .Values.postgresql.passwordSecret }}
        key: {{ .Values.postgresql.passwordSecretKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Temporal client security (issue 12): the Secrets of temporal.tls and temporal.apiKey, mounted as
directories (not subPath) so that a renewed Secret reaches the files skewguard re-reads.
*/}}
{{- define "skewguard.temporalVolumeMounts" -}}
{{- if .Values.temporal.tls.secretName }}
- name: temporal-tls
  mountPath: /etc/skewguard/temporal-tls
  readOnly: true
{{- end }}
{{- if .Values.temporal.apiKey.existingSecret }}
- name: temporal-api-key
  mountPath: /etc/skewguard/temporal-api-key
  readOnly: true
{{- end }}
{{- end -}}

{{- define "skewguard.temporalVolumes" -}}
{{- with .Values.temporal.tls.secretName }}
- name: temporal-tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- with .Values.temporal.apiKey }}
{{- if .existingSecret }}
- name: temporal-api-key
  secret:
    secretName: {{ .existingSecret }}
    items:
      - key: {{ .existingSecretKey }}
        path: api-key
{{- end }}
{{- end }}
{{- end -}}

{{/* The TLS Secret's mount, in every container (each one loads the configuration, which checks the pair). */}}
{{- define "skewguard.tlsVolumeMounts" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "skewguard.tlsMountPath" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The TLS Secret as a pod volume. */}}
{{- define "skewguard.tlsVolumes" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "skewguard.tlsSecretName" . }}
{{- end }}
{{- end -}}
