{{/*
Chart name, or nameOverride. Cut to 63 characters, the limit of a label value.
*/}}
{{- define "sklm-restore-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name: fullnameOverride, or the release name followed by the chart name
unless the release name already contains it. Cut to 63 characters for DNS-1123 names.
*/}}
{{- define "sklm-restore-operator.fullname" -}}
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

{{/*
Labels that select the operator pods. They never change after the first install, because
a Deployment's selector is immutable.
*/}}
{{- define "sklm-restore-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sklm-restore-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels of every resource of the chart.
*/}}
{{- define "sklm-restore-operator.labels" -}}
{{ include "sklm-restore-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: sklm-restore-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
ServiceAccount the operator runs as.
*/}}
{{- define "sklm-restore-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sklm-restore-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Namespaces the operator watches in `namespace` scope, comma-separated: watchNamespaces
without repeats, or the release namespace when that list is empty. Empty in `cluster`
scope, where the operator watches every namespace. Fails on an unknown rbac.scope, on a
name that is not a DNS-1123 label, and on a non-empty watchNamespace, the removed
single-namespace value.
*/}}
{{- define "sklm-restore-operator.watchNamespaces" -}}
{{- if .Values.watchNamespace }}
{{- fail (printf "watchNamespace was replaced by the list watchNamespaces: set watchNamespaces={%s} instead" (toString .Values.watchNamespace)) }}
{{- end }}
{{- if and (eq .Values.rbac.scope "cluster") .Values.watchNamespaces }}
{{- fail "watchNamespaces applies only with rbac.scope=namespace; with rbac.scope=cluster the operator watches every namespace" }}
{{- end }}
{{- if eq .Values.rbac.scope "namespace" }}
{{- $listed := default (list .Release.Namespace) .Values.watchNamespaces }}
{{- if not (kindIs "slice" $listed) }}
{{- fail (printf "watchNamespaces must be a list, such as [keys, payments] in a values file or {keys,payments} with --set; got %q" (toString $listed)) }}
{{- end }}
{{- $namespaces := list }}
{{- range $listed }}
{{- $namespace := toString . }}
{{- if not (and (le (len $namespace) 63) (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $namespace)) }}
{{- fail (printf "watchNamespaces: %q is not a namespace name (a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)" $namespace) }}
{{- end }}
{{- $namespaces = append $namespaces $namespace }}
{{- end }}
{{- $namespaces | uniq | join "," }}
{{- else if ne .Values.rbac.scope "cluster" }}
{{- fail (printf "rbac.scope must be \"cluster\" or \"namespace\", got %q" .Values.rbac.scope) }}
{{- end }}
{{- end }}

{{/*
Rules the operator needs on the watched objects, in a ClusterRole or in each Role.
README.md says why each rule is needed.
*/}}
{{- define "sklm-restore-operator.watchRules" -}}
- apiGroups: ["sklm.dev"]
  resources: ["sklmrestores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sklm.dev"]
  resources: ["sklmrestores/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
"true" when the operator runs with --leader-election: more than one replica, or
leaderElection.enabled.
*/}}
{{- define "sklm-restore-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/*
Image reference: repository@digest when a digest is set, else repository:tag.
*/}}
{{- define "sklm-restore-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
