{{/* Labels of one component's objects: metallb-rs.labels "allocator". */}}
{{- define "metallb-rs.labels" -}}
app.kubernetes.io/name: metallb-rs
app.kubernetes.io/component: {{ . }}
app.kubernetes.io/part-of: metallb-rs
{{- end }}

{{/* What selects one component's pods. */}}
{{- define "metallb-rs.selector" -}}
app.kubernetes.io/name: metallb-rs
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "metallb-rs.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Where the workloads send spans, empty for nowhere. */}}
{{- define "metallb-rs.otlpEndpoint" -}}
{{- if .Values.otlpEndpoint -}}
{{ .Values.otlpEndpoint }}
{{- else if .Values.jaeger.enabled -}}
http://metallb-jaeger:4317
{{- end }}
{{- end }}

{{/* The last entry of a workload's env: the OTLP endpoint, when there is one. */}}
{{- define "metallb-rs.otlpEnv" -}}
{{- with include "metallb-rs.otlpEndpoint" . }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Scheduling of one component's pods: metallb-rs.scheduling (dict "values" .Values.allocator
"root" .). nodeSelector, tolerations, affinity, priorityClassName and imagePullSecrets, each
only when set.
*/}}
{{- define "metallb-rs.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whether cert-manager issues the allocator's TLS ("true" or ""). */}}
{{- define "metallb-rs.certManager" -}}
{{- if eq .Values.tls.provider "cert-manager" }}true
{{- else if ne .Values.tls.provider "watcher" }}
{{- fail (printf "tls.provider must be watcher or cert-manager, not %q" .Values.tls.provider) }}
{{- end }}
{{- end }}

{{/*
The CA bundle the watcher and the announcers trust, as a pod volume named allocator-ca. The
watcher keeps it in a ConfigMap; cert-manager writes ca.crt into the serving certificate's
Secret, and only that key is projected.
*/}}
{{- define "metallb-rs.caVolume" -}}
- name: allocator-ca
{{- if include "metallb-rs.certManager" . }}
  secret:
    secretName: metallb-allocator-tls
    optional: true
    items:
    - key: ca.crt
      path: ca.crt
{{- else }}
  configMap:
    name: metallb-allocator-ca
    optional: true
{{- end }}
{{- end }}

{{/*
The ServiceAccounts the allocator grants roles to, when the release is not in metallb-system
(the allocator's defaults name that namespace).
*/}}
{{- define "metallb-rs.roleAccounts" -}}
{{- if ne .Release.Namespace "metallb-system" }}
- name: METALLB_WRITER_SERVICE_ACCOUNTS
  value: {{ .Release.Namespace }}/metallb-watcher
- name: METALLB_ANNOUNCER_SERVICE_ACCOUNTS
  value: {{ .Release.Namespace }}/metallb-announcer
{{- end }}
{{- end }}
