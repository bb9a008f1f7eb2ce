{{/*
The configuration files the pod reads: muster's (ConfigMap <name>-config) and the sidecar kube-scheduler's
(ConfigMap <name>-kube-scheduler-config). Named templates, so that the Deployment's checksum/config annotation is
computed over exactly their text (a label change does not restart the pods).
*/}}
{{- define "muster.musterConfig" -}}
{{- $loopback := include "muster.loopback" . }}
{{- $mtls := include "muster.mtls" . }}
{{- $sidecar := include "muster.sidecar" . }}
{{- $tlsDir := ternary "/certs" "/etc/muster/tls" (not (empty $loopback)) -}}
# Pods whose spec.schedulerName is this are muster's (the profile name in kube-scheduler's configuration).
schedulerName: {{ .Values.schedulerName }}
# Queue for gangs that name none (created on first use with weight 1 if it does not exist).
defaultQueue: default
# Prefix of the extender verbs: POST <urlPrefix>/filter|prioritize|bind|preempt.
urlPrefix: /muster
# The extender verbs' listener: kube-scheduler's only way in. bind acts with muster's RBAC, so it is either
# loopback (kube-scheduler in the same pod) or mutual TLS. --listen overrides listen.
extender:
  {{- if $loopback }}
  # Loopback: only this pod's containers reach it; kube-scheduler is one of them.
  listen: {{ include "muster.extenderListen" . }}
  {{- else if $sidecar }}
  # The pod IP: the active kube-scheduler may run in the other pod and comes through the Service.
  listen: {{ include "muster.extenderListen" . }}
  {{- else }}
  # The pod IP: the kube-scheduler outside this pod comes through the Service.
  listen: {{ include "muster.extenderListen" . }}
  {{- end }}
  {{- if and $mtls $loopback }}
  # Mutual TLS even on loopback: anything else sharing the pod's network (an ephemeral debug container, a
  # service-mesh proxy) needs a client certificate too. The files are the ones the init container `certs`
  # wrote (`muster certs`, a CA made anew at every pod start, its key never written).
  {{- else if $mtls }}
  # Mutual TLS: the Secret {{ include "muster.serverTLSSecret" . }} (cert-manager's key names), mounted here. Only clients presenting a
  # certificate signed by its ca.crt ({{ if $sidecar }}the sidecars'{{ else }}your kube-scheduler's{{ end }}, from {{ include "muster.clientTLSSecret" . }}) get past the handshake.
  {{- end }}
  {{- if $mtls }}
  tls:
    certFile: {{ $tlsDir }}/tls.crt
    keyFile: {{ $tlsDir }}/tls.key
    clientCAFile: {{ $tlsDir }}/ca.crt
  {{- end }}
  {{- if and $mtls $loopback }}
  # The tls files are re-read this often; a change applies to new connections (here they change only when
  # the pod is replaced).
  {{- else }}
  # The tls files are re-read this often; a change applies to new connections (cert-manager renews the
  # Secret in place, the kubelet updates the mounted files, no restart).
  {{- end }}
  tlsReloadInterval: 10s
  # Plain HTTP on a non-loopback address is refused at start unless this is true: whoever reaches it could
  # bind muster's pods. Only for a network where something else authenticates the caller.
  insecurePlainHTTP: {{ and (not $mtls) (not $loopback) | ternary "true" "false" }}
  # Open connections at most; more are closed on arrival (kube-scheduler keeps a few alive and reconnects).
  maxConnections: 16384
  # Requests handled at once; more get 503 at once (kube-scheduler retries the pod) instead of queueing.
  maxConcurrentRequests: 64
  # A request not answered by then gets 408; kube-scheduler's own httpTimeout (10s) gives up at the same time.
  requestTimeout: 10s
  # Ceiling of a request body (64 MiB); the limit applied is 2 MiB + 16 KiB per known node, below it (413 above).
  maxBodyBytes: 67108864
  # A TLS handshake not finished by then is dropped (a client that connects and stalls holds nothing).
  handshakeTimeout: 10s
  # A request's headers not received by then close the connection; also how long an idle keep-alive lasts.
  headerReadTimeout: 30s
# /healthz (liveness) and /readyz (only the leader, synced, is ready), for kubelet's probes, which come from
# the node, hence every address. --health-listen overrides listen.
health:
  listen: 0.0.0.0:8081
# /metrics (Prometheus, open) and /state (the gangs muster holds, see stateAccess). --metrics-listen
# overrides listen.
metrics:
  listen: 0.0.0.0:9090
  # Who may read /state: `kubernetes` needs `Authorization: Bearer <token>` of an identity allowed to list
  # podgroups.scheduling.muster.dev (cluster-wide, or in the namespace of ?namespace=); `open` checks nothing.
  stateAccess: kubernetes
# Admission runs on every relevant change, and at least this often (for timers such as drainAfter).
cycleInterval: 1s
# PodGroup and Queue status are written when they change, at most this often (an admission is written at once,
# before any member is directed to a node).
statusInterval: 2s
# A reclaim eviction the API server refuses (a PodDisruptionBudget's 429, a 5xx) is retried this long; then the
# victim counts as running again, the beneficiary's PodGroup says why, and the next cycle re-plans.
evictionTimeout: 1m
# /readyz fails while a watch has been failing for longer than this.
watchStaleAfter: 30s
policy:
  # A filter answer whose bind was never observed is forgotten after this long.
  claimTTL: 30s
  # Reservations of an admitted gang whose members never bind are released after this long.
  reservationTimeout: 10m
  # A blocked head of a queue within its share starts holding capacity as it frees after this long.
  drainAfter: 2m
  # Pods running for less than this are never reclaimed.
  minRuntime: 0s
{{- if not .Values.leaderElection.enabled }}
# One replica without leader election: it admits and writes as soon as it has synced.
{{- else if eq (int .Values.replicaCount) 1 }}
# One replica, but a Deployment can briefly run two pods (a replacement while a pod on a lost node has not
# stopped): the holder of the Lease `{{ include "muster.leaseName" . }}` in this pod's namespace is the only one that admits and writes.
{{- else }}
{{- $replicas := include "muster.replicas" . }}
# {{ upper (substr 0 1 $replicas) }}{{ substr 1 (len $replicas) $replicas }}: the holder of the Lease `{{ include "muster.leaseName" . }}` in this pod's namespace ($POD_NAMESPACE, where
# the Role {{ include "muster.fullname" . }}-leader-election allows it) admits, writes and is Ready; the others are standbys (/readyz 503).
# A different lease name or namespace needs the same change in the Role.
{{- end }}
leaderElection:
  enabled: {{ .Values.leaderElection.enabled }}
  leaseName: {{ include "muster.leaseName" . }}
  # Default (empty): the pod's namespace ($POD_NAMESPACE), else "default".
  leaseNamespace: ""
  leaseDuration: {{ .Values.leaderElection.leaseDuration }}
  # The leader renews this long before the Lease would expire.
  renewGrace: {{ .Values.leaderElection.renewGrace }}
{{- end }}

{{- define "muster.sidecarSchedulerConfig" -}}
{{- $loopback := include "muster.loopback" . -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
{{- if not .Values.leaderElection.enabled }}
leaderElection:
  leaderElect: false
{{- else }}
{{- if $loopback }}
# As muster, against a briefly doubled pod: the Lease `kube-scheduler` in {{ .Release.Namespace }} (the bootstrap role
# system:kube-scheduler allows exactly that Lease name, in any namespace). Never leave the namespace at its
# default, kube-system: that is the cluster's own scheduler's Lease.
{{- else }}
# One sidecar per replica, one of them active: they elect on the Lease `kube-scheduler` in {{ .Release.Namespace }}
# (the bootstrap role system:kube-scheduler allows exactly that Lease name, in any namespace). Never leave
# the namespace at its default, kube-system: that is the cluster's own scheduler's Lease.
{{- end }}
leaderElection:
  leaderElect: true
  resourceNamespace: {{ .Release.Namespace }}
  resourceName: kube-scheduler
{{- end }}
{{- include "muster.schedulerProfileAndExtender" . | nindent 0 }}
{{- end }}
