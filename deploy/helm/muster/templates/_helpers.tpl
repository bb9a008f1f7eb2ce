{{/* The chart name, as in the label app.kubernetes.io/name. */}}
{{- define "muster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The base of every object name: `muster` for a release named muster. */}}
{{- define "muster.fullname" -}}
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

{{/* Labels that select muster's pods (Deployment, Services, PodDisruptionBudget, NetworkPolicy). */}}
{{- define "muster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "muster.name" . }}
{{- end }}

{{/* Labels of every object; Helm's bookkeeping labels only for a Helm release. */}}
{{- define "muster.labels" -}}
{{ include "muster.selectorLabels" . }}
{{- if not .Values.plainManifests }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- end }}

{{/* Whether kube-scheduler runs beside muster in its pod. */}}
{{- define "muster.sidecar" -}}
{{- if eq .Values.scheduler.mode "sidecar" }}true{{ end }}
{{- end }}

{{/* Whether the sidecar calls the muster in its own pod on loopback (the single-replica setup). */}}
{{- define "muster.loopback" -}}
{{- if and (eq .Values.scheduler.mode "sidecar") (eq .Values.scheduler.endpoint "loopback") }}true{{ end }}
{{- end }}

{{/* Whether the extender verbs are served over mutual TLS. */}}
{{- define "muster.mtls" -}}
{{- if eq .Values.tls.mode "mtls" }}true{{ end }}
{{- end }}

{{/* Whether cert-manager issues the two Secrets (mTLS through the Service). */}}
{{- define "muster.certManager" -}}
{{- if and (eq .Values.tls.mode "mtls") .Values.tls.certManager (not (include "muster.loopback" .)) }}true{{ end }}
{{- end }}

{{/* The Lease muster elects on. */}}
{{- define "muster.leaseName" -}}
{{- default (include "muster.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The Secrets of the mutual TLS through the Service: muster's server certificate, kube-scheduler's client one. */}}
{{- define "muster.serverTLSSecret" -}}
{{- include "muster.fullname" . }}-tls
{{- end }}
{{- define "muster.clientTLSSecret" -}}
{{- include "muster.fullname" . }}-scheduler-client-tls
{{- end }}

{{/* The Service's DNS name, a name in muster's server certificate. */}}
{{- define "muster.serviceHost" -}}
{{- include "muster.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end }}

{{/* The extender's address and the URL kube-scheduler calls. */}}
{{- define "muster.extenderListen" -}}
{{- if include "muster.loopback" . }}127.0.0.1:8888{{ else }}0.0.0.0:8443{{ end }}
{{- end }}
{{- define "muster.extenderURL" -}}
{{- $scheme := ternary "https" "http" (eq .Values.tls.mode "mtls") }}
{{- if include "muster.loopback" . }}
{{- printf "%s://127.0.0.1:8888/muster" $scheme }}
{{- else }}
{{- printf "%s://%s:8443/muster" $scheme (include "muster.serviceHost" .) }}
{{- end }}
{{- end }}

{{/* "two replicas", for comments. */}}
{{- define "muster.replicas" -}}
{{- $n := int .Values.replicaCount }}
{{- $words := list "no" "one" "two" "three" "four" "five" "six" "seven" "eight" "nine" }}
{{- if lt $n 10 }}{{ index $words $n }}{{ else }}{{ $n }}{{ end }} replica{{ if ne $n 1 }}s{{ end }}
{{- end }}

{{/* The PriorityClass the pods run at. */}}
{{- define "muster.priorityClassName" -}}
{{- default (printf "%s-critical" (include "muster.fullname" .)) .Values.priorityClassName }}
{{- end }}

{{/* muster's image. */}}
{{- define "muster.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Refuses combinations that cannot work, with the reason. Included by every template that depends on them, so a
`helm template --show-only` of any one of them checks too.
*/}}
{{- define "muster.validate" -}}
{{- $v := .Values }}
{{- if not (has $v.scheduler.mode (list "sidecar" "external")) }}
{{- fail (printf "scheduler.mode must be sidecar or external, not %q" $v.scheduler.mode) }}
{{- end }}
{{- if not (has $v.scheduler.endpoint (list "service" "loopback")) }}
{{- fail (printf "scheduler.endpoint must be service or loopback, not %q" $v.scheduler.endpoint) }}
{{- end }}
{{- if eq $v.tls.mode "tls" }}
{{- fail "tls.mode tls (server TLS without client certificates) is not something muster serves: its extender requires a client certificate of muster's CA, or plain HTTP. Use tls.mode mtls, the default" }}
{{- end }}
{{- if not (has $v.tls.mode (list "none" "mtls")) }}
{{- fail (printf "tls.mode must be mtls or none, not %q" $v.tls.mode) }}
{{- end }}
{{- if and (eq $v.scheduler.mode "external") (eq $v.scheduler.endpoint "loopback") }}
{{- fail "scheduler.endpoint loopback needs scheduler.mode sidecar: an external kube-scheduler reaches muster through the Service" }}
{{- end }}
{{- if include "muster.loopback" . }}
{{- if ne (int $v.replicaCount) 1 }}
{{- fail (printf "scheduler.endpoint loopback runs exactly one replica (replicaCount %v): with two, the active sidecar scheduler could sit beside the standby muster, which refuses every call. Use scheduler.endpoint service for more replicas" $v.replicaCount) }}
{{- end }}
{{- if and (eq $v.tls.mode "mtls") $v.tls.certManager }}
{{- fail "scheduler.endpoint loopback with tls.mode mtls makes its certificates in the pod (an init container runs muster certs): set tls.certManager false" }}
{{- end }}
{{- else if and (eq $v.tls.mode "none") (not $v.tls.insecurePlainHTTP) }}
{{- fail "tls.mode none on the pod IP would let anyone who reaches port 8443 call the extender verbs (bind among them) as muster. Use tls.mode mtls, scheduler.endpoint loopback, or set tls.insecurePlainHTTP true if something else authenticates callers" }}
{{- end }}
{{- if and (gt (int $v.replicaCount) 1) (not $v.leaderElection.enabled) }}
{{- fail (printf "replicaCount %v needs leaderElection.enabled: two replicas acting at once would admit gangs into the same free capacity" $v.replicaCount) }}
{{- end }}
{{- if lt (int $v.replicaCount) 1 }}
{{- fail "replicaCount must be at least 1" }}
{{- end }}
{{- if not (has $v.logFormat (list "" "json" "text")) }}
{{- fail (printf "logFormat must be json, text or empty, not %q" $v.logFormat) }}
{{- end }}
{{- end }}

{{/* The admission webhook: the Service the API server calls, its DNS name (the certificate's), and the Secret
muster keeps that certificate in. The MutatingWebhookConfiguration is named like the release's objects. */}}
{{- define "muster.webhookService" -}}
{{- include "muster.fullname" . }}-webhook
{{- end }}
{{- define "muster.webhookHost" -}}
{{- include "muster.webhookService" . }}.{{ .Release.Namespace }}.svc
{{- end }}
{{- define "muster.webhookSecret" -}}
{{- include "muster.fullname" . }}-webhook-tls
{{- end }}
