{{/*
Kept to Go template builtins and a few Helm functions (include, toYaml,
nindent, quote, default, int64, fail): accel-installer renders this chart
without helm and implements exactly these (installer/src/chart/funcs.rs).
*/}}

{{/* The labels manifests/base/kustomization.yaml adds to every object. */}}
{{- define "sidecar-accel.labels" -}}
app.kubernetes.io/name: sidecar-accel
app.kubernetes.io/part-of: sidecar-accel
{{- end }}

{{/* The daemon pods' labels, also the DaemonSet's selector. */}}
{{- define "sidecar-accel.selectorLabels" -}}
app.kubernetes.io/name: sidecar-accel
app.kubernetes.io/component: node-daemon
{{- end }}

{{/* repository[:tag][@digest]; the tag defaults to appVersion unless a digest is given. */}}
{{- define "sidecar-accel.image" -}}
{{ .Values.image.repository }}
{{- if or .Values.image.tag (not .Values.image.digest) }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{ end }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* "yes" when extraArgs accepts running without flow control, else empty. */}}
{{- define "sidecar-accel.allowsNoFlowControl" -}}
{{- range .Values.extraArgs }}{{ if eq . "--allow-no-flow-control" }}yes{{ end }}{{ end }}
{{- end }}
