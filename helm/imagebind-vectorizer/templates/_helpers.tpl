{{/* Names ------------------------------------------------------------------------------------- */}}
{{- define "imagebind-vectorizer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imagebind-vectorizer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "imagebind-vectorizer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imagebind-vectorizer.labels" -}}
helm.sh/chart: {{ include "imagebind-vectorizer.chart" . }}
{{ include "imagebind-vectorizer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: vectorizer
{{- end }}

{{- define "imagebind-vectorizer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagebind-vectorizer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "imagebind-vectorizer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imagebind-vectorizer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "imagebind-vectorizer.modelCacheClaim" -}}
{{- if eq .Values.modelCache.type "existingClaim" }}
{{- required "modelCache.existingClaim is required when modelCache.type=existingClaim" .Values.modelCache.existingClaim }}
{{- else }}
{{- printf "%s-model-cache" (include "imagebind-vectorizer.fullname" .) }}
{{- end }}
{{- end }}

{{/* Image: repository[:tag][@digest]; the default tag follows the GPU switch. ----------------------- */}}
{{- define "imagebind-vectorizer.image" -}}
{{- $flavor := ternary "cuda" "cpu" .Values.gpu.enabled }}
{{- $tag := .Values.image.tag | default (printf "%s-%s" .Chart.AppVersion $flavor) }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* IMAGEBIND_DEVICE: explicit, or cuda with a GPU, else cpu. ------------------------------------ */}}
{{- define "imagebind-vectorizer.device" -}}
{{- $device := .Values.config.IMAGEBIND_DEVICE | default (ternary "cuda" "cpu" .Values.gpu.enabled) }}
{{- if and .Values.gpu.enabled (eq $device "cpu") }}
{{- fail "gpu.enabled=true but config.IMAGEBIND_DEVICE=cpu: the GPU would sit idle (leave IMAGEBIND_DEVICE empty)" }}
{{- end }}
{{- $device }}
{{- end }}

{{/* One config value as the string the server parses. Helm reads YAML numbers as float64, which would
print 536870912 as 5.36870912e+08: whole numbers are printed as integers. ------------------------- */}}
{{- define "imagebind-vectorizer.configValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- . | int64 | toString }}
{{- else }}
{{- . | toString }}
{{- end }}
{{- end }}

{{/* Segment uploads (moment search) are spooled here: an emptyDir with room for the most streams
at once, each as large as a segmented file may be. --------------------------------------------------- */}}
{{- define "imagebind-vectorizer.spoolPath" -}}/spool{{- end }}

{{- define "imagebind-vectorizer.spoolBytes" -}}
{{- mul (.Values.config.IMAGEBIND_MAX_SEGMENT_STREAMS | int64) (.Values.config.IMAGEBIND_MAX_SEGMENT_SOURCE_BYTES | int64) }}
{{- end }}

{{- define "imagebind-vectorizer.shutdownGraceSeconds" -}}
{{- .Values.config.IMAGEBIND_SHUTDOWN_GRACE_S | ceil | int64 }}
{{- end }}

{{/* Probe handler: HTTP path or native gRPC health check. ------------------------------------------ */}}
{{- define "imagebind-vectorizer.probeHandler" -}}
{{- $root := .root }}
{{- if eq $root.Values.probes.type "grpc" }}
grpc:
  port: {{ $root.Values.containerPorts.grpc }}
  service: {{ index $root.Values.probes.grpcService .kind | quote }}
{{- else }}
httpGet:
  path: {{ ternary "/.well-known/live" "/.well-known/ready" (eq .kind "liveness") }}
  port: http
  {{- if $root.Values.tls.enabled }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}

{{/* Security: where the Secrets are mounted, and the checks on combinations that cannot work. ------- */}}
{{- define "imagebind-vectorizer.secretsDir" -}}/etc/imagebind-vectorizer{{- end }}

{{- define "imagebind-vectorizer.apiKeySecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-api-keys" (include "imagebind-vectorizer.fullname" .)) }}
{{- end }}

{{/* The files the server reads (YAML map; absent keys are not configured). */}}
{{- define "imagebind-vectorizer.secretFiles" -}}
{{- $dir := include "imagebind-vectorizer.secretsDir" . }}
{{- if .Values.auth.enabled }}
apiKeys: {{ $dir }}/api-keys/api-keys
{{- end }}
{{- if .Values.auth.metrics.existingSecret }}
metricsKeys: {{ $dir }}/metrics-keys/metrics-keys
{{- end }}
{{- if .Values.tls.enabled }}
cert: {{ $dir }}/tls/tls.crt
key: {{ $dir }}/tls/tls.key
{{- if .Values.tls.clientCA.secretName }}
clientCA: {{ $dir }}/client-ca/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{- define "imagebind-vectorizer.checkSecurity" -}}
{{- $probes := or .Values.probes.startup.enabled .Values.probes.liveness.enabled .Values.probes.readiness.enabled }}
{{- if and .Values.config.IMAGEBIND_AUTH_PROBES $probes }}
{{- fail "config.IMAGEBIND_AUTH_PROBES=true: kubelet's probes cannot send a key (keep it false; the probes reveal only readiness)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled=true needs tls.secretName (a kubernetes.io/tls Secret with tls.crt and tls.key)" }}
{{- end }}
{{- if and .Values.tls.enabled (eq .Values.probes.type "grpc") }}
{{- fail "tls.enabled=true with probes.type=grpc: kubelet's gRPC probes do not speak TLS (use probes.type=http)" }}
{{- end }}
{{- if and .Values.tls.clientCA.secretName (not .Values.tls.enabled) }}
{{- fail "tls.clientCA needs tls.enabled=true (client certificates are checked in the TLS handshake)" }}
{{- end }}
{{- if and .Values.tls.clientCA.secretName (ne .Values.config.IMAGEBIND_TLS_CLIENT_AUTH "grpc") }}
{{- fail "tls.clientCA with config.IMAGEBIND_TLS_CLIENT_AUTH other than grpc: stock Weaviate and kubelet's HTTP probes present no client certificate (set it to grpc)" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.allowedClients) }}
{{- fail "networkPolicy.enabled=true needs networkPolicy.allowedClients (an empty list would admit everyone)" }}
{{- end }}
{{- end }}
