{{/* kube-scheduler's profile and extender entry calling muster (sidecar ConfigMap, or the external snippet). */}}
{{- define "muster.schedulerProfileAndExtender" -}}
{{- $loopback := include "muster.loopback" . }}
{{- $mtls := include "muster.mtls" . -}}
profiles:
  # The only profile: extenders apply to every profile of an instance.
  - schedulerName: {{ .Values.schedulerName }}
    # Offer muster every feasible node: it directs each member to the node it reserved.
    percentageOfNodesToScore: 100
extenders:
  {{- if $loopback }}
  # Loopback: the muster next to this scheduler, the only one (see deploy/README.md for why this setup
  # runs one replica).{{ if $mtls }} The host is in muster's certificate (muster certs --host 127.0.0.1).{{ end }}
  {{- else if eq .Values.scheduler.mode "sidecar" }}
  # The Service, not loopback: the active sidecar may run next to the standby muster. The Service routes
  # only to the Ready replica, the leader, so a failover needs no scheduler restart.{{ if $mtls }} The host is a DNS name
  # of muster's server certificate ({{ include "muster.serverTLSSecret" . }}).{{ end }}
  {{- else }}
  # muster's Service, which routes only to the Ready replica, the leader, so a failover needs no scheduler
  # restart.{{ if $mtls }} The host is a DNS name of muster's server certificate ({{ include "muster.serverTLSSecret" . }}).{{ end }}
  {{- end }}
  - urlPrefix: {{ include "muster.extenderURL" . | quote }}
    {{- if $mtls }}
    # Keep caFile with it: enableHTTPS without a CA makes kube-scheduler skip verifying muster's certificate.
    enableHTTPS: true
    tlsConfig:
      {{- if $loopback }}
      # What the init container `certs` wrote: the pod's CA (verifies muster) and this scheduler's client
      # certificate.
      caFile: /certs/ca.crt
      certFile: /certs/client.crt
      keyFile: /certs/client.key
      {{- else }}
      {{- $dir := ternary "/etc/kubernetes/muster-scheduler-tls" .Values.scheduler.externalTLSDir (eq .Values.scheduler.mode "sidecar") }}
      # The Secret {{ include "muster.clientTLSSecret" . }}: the CA that signed muster's certificate (verifies muster) and
      # this scheduler's client certificate, re-read for each new connection (a renewal needs no restart).
      caFile: {{ $dir }}/ca.crt
      certFile: {{ $dir }}/tls.crt
      keyFile: {{ $dir }}/tls.key
      {{- end }}
    {{- end }}
    filterVerb: filter
    prioritizeVerb: prioritize
    weight: 5
    bindVerb: bind
    preemptVerb: preempt
    nodeCacheCapable: true
    httpTimeout: 10s
    # Not ignorable: if muster cannot answer, its pods wait rather than start without gang admission.
    ignorable: false
{{- end }}
