{{/* Chart name, truncated to the 63 characters a label value may hold. */}}
{{- define "denas-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, unless it already contains the chart name. */}}
{{- define "denas-operator.fullname" -}}
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

{{- define "denas-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels of every object. */}}
{{- define "denas-operator.labels" -}}
helm.sh/chart: {{ include "denas-operator.chart" . }}
{{ include "denas-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: denas
{{- end }}

{{/* Labels that select the operator pods (immutable once installed). */}}
{{- define "denas-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "denas-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "denas-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "denas-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "denas-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "denas-operator.peeringName" -}}
{{- default (include "denas-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/* HA: more than one replica means kopf peering. */}}
{{- define "denas-operator.ha" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* Namespaces watched in namespaced mode; fails early when the list is missing. */}}
{{- define "denas-operator.watchNamespaces" -}}
{{- if and (not .Values.rbac.clusterWide) (empty .Values.rbac.watchNamespaces) }}
{{- fail "rbac.clusterWide is false: list the namespaces to watch in rbac.watchNamespaces" }}
{{- end }}
{{- toJson (default (list) .Values.rbac.watchNamespaces) }}
{{- end }}

{{/*
RBAC rules on namespaced resources: what the operator does to DeNASJobs and their children.
Bound cluster-wide (ClusterRole) or per watched namespace (Role). Keep in sync with
deploy/base/rbac/clusterrole.yaml (tests/test_chart_render.py compares them).
*/}}
{{- define "denas-operator.namespacedRules" -}}
# It never writes spec (GitOps would see drift): patch is for its finalizer and kopf's annotations;
# delete enforces spec.ttlSecondsAfterFinished.
# create/patch/delete of DeNASJobs are also how a DeNASCampaign owns its cells (one job per cell).
- apiGroups: [denas.io]
  resources: [denasjobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [denas.io]
  resources: [denasjobs/status]
  verbs: [get, patch, update]
- apiGroups: [denas.io]
  resources: [denascampaigns]
  verbs: [get, list, watch, patch]
- apiGroups: [denas.io]
  resources: [denascampaigns/status]
  verbs: [get, patch, update]
# Search and training pods (a failed group is deleted and re-created as a whole).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
# Headless Services of the groups; owner references delete them with the job.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create]
# <job>-spec (the manifest the pods read) and <job>-result (what the pods report). get/patch
# are also what the pods' per-job Role grants: Kubernetes lets the operator grant only what it holds.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
# The pods' per-job ServiceAccount <job>-worker, its Role (get/patch on <job>-result only) and
# RoleBinding, when spec.serviceAccountName is unset; owner references delete them with the job.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create]
# Lifecycle Events on the DeNASJob (operator events.py) and kopf's own.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# The per-job NetworkPolicy <job>-pods (rendezvous ports only from the same job's pods).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create]
# Kueue: a missing LocalQueue becomes Blocked=KueueQueueNotFound instead of a silent wait.
- apiGroups: [kueue.x-k8s.io]
  resources: [localqueues]
  verbs: [get]
# spec.storage.claimName must exist before pods mount it (condition PersistentVolumeClaimNotFound).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
# training.backend: kubeflow
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}

{{/* Cluster-scoped rules needed only in cluster-wide mode. */}}
{{- define "denas-operator.clusterRules" -}}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}

{{- define "denas-operator.discoveryRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end }}

{{/* "true" when NetworkPolicies are wanted and the cluster serves them. */}}
{{- define "denas-operator.networkPolicy" -}}
{{- if and .Values.networkPolicy.enabled (.Capabilities.APIVersions.Has "networking.k8s.io/v1") }}true{{ end }}
{{- end }}
