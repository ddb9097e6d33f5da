{{/* The chart name, or nameOverride. */}}
{{- define "share-hygiene.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix: release + chart name, unless the release name holds the chart name. */}}
{{- define "share-hygiene.fullname" -}}
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

{{- define "share-hygiene.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "share-hygiene.labels" -}}
helm.sh/chart: {{ include "share-hygiene.chart" . }}
{{ include "share-hygiene.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: share-hygiene
{{- end }}

{{/* Labels that select the controller pods. */}}
{{- define "share-hygiene.selectorLabels" -}}
app.kubernetes.io/name: {{ include "share-hygiene.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "share-hygiene.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "share-hygiene.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "share-hygiene.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "share-hygiene.leaseName" -}}
{{- default (include "share-hygiene.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The job matcher the alerts use. */}}
{{- define "share-hygiene.jobSelector" -}}
{{- default (printf "job=%q" (include "share-hygiene.name" .)) .Values.metrics.prometheusRules.jobSelector }}
{{- end }}

{{/* The rules for HandlePolicies and their credentials, cluster-wide or per namespace. */}}
{{- define "share-hygiene.policyRules" -}}
- apiGroups: ["sharehygiene.io"]
  resources: ["handlepolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sharehygiene.io"]
  resources: ["handlepolicies/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The ServiceAccount's annotations: the values', plus the workload identity client id (and
tenant) when workloadIdentity is enabled.
*/}}
{{- define "share-hygiene.serviceAccountAnnotations" -}}
{{- $annotations := deepCopy (.Values.serviceAccount.annotations | default dict) -}}
{{- if .Values.workloadIdentity.enabled -}}
{{- $_ := set $annotations "azure.workload.identity/client-id" .Values.workloadIdentity.clientId -}}
{{- with .Values.workloadIdentity.tenantId -}}
{{- $_ := set $annotations "azure.workload.identity/tenant-id" . -}}
{{- end -}}
{{- end -}}
{{- toYaml $annotations -}}
{{- end -}}

{{/*
The pod's own labels: the values', plus the label the workload identity webhook selects pods
by when workloadIdentity is enabled.
*/}}
{{- define "share-hygiene.podLabels" -}}
{{- $labels := deepCopy (.Values.podLabels | default dict) -}}
{{- if .Values.workloadIdentity.enabled -}}
{{- $_ := set $labels "azure.workload.identity/use" "true" -}}
{{- end -}}
{{- if $labels -}}
{{- toYaml $labels -}}
{{- end -}}
{{- end -}}
