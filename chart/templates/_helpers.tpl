{{/*
Names, labels and the pieces every pod shares. Labels are defined here once; templates never repeat them.
Nothing here is random or time-based: a render depends only on the values (Argo CD stays in sync).
*/}}

{{- define "eternia-backup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eternia-backup.fullname" -}}
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

{{- define "eternia-backup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "eternia-backup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eternia-backup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "eternia-backup.labels" -}}
helm.sh/chart: {{ include "eternia-backup.chart" . }}
{{ include "eternia-backup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eternia-backup
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of a component's resources. Usage: include "eternia-backup.componentLabels" (list . "backup") */}}
{{- define "eternia-backup.componentLabels" -}}
{{ include "eternia-backup.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Selector labels of a component. Usage: include "eternia-backup.componentSelectorLabels" (list . "webhook") */}}
{{- define "eternia-backup.componentSelectorLabels" -}}
{{ include "eternia-backup.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Argo CD sync wave: storage, configuration and RBAC before the workloads that use them. */}}
{{- define "eternia-backup.syncWave.prerequisite" -}}
argocd.argoproj.io/sync-wave: "-1"
{{- end }}
{{- define "eternia-backup.syncWave.workload" -}}
argocd.argoproj.io/sync-wave: "0"
{{- end }}
{{- define "eternia-backup.syncWave.monitoring" -}}
argocd.argoproj.io/sync-wave: "1"
{{- end }}

{{- define "eternia-backup.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* ServiceAccount name of a component. Usage: include "eternia-backup.serviceAccountName" (list . "backup") */}}
{{- define "eternia-backup.serviceAccountName" -}}
{{- $ctx := index . 0 }}
{{- $component := index . 1 }}
{{- $name := get $ctx.Values.serviceAccount.names $component }}
{{- if $name }}
{{- $name }}
{{- else if $ctx.Values.serviceAccount.create }}
{{- printf "%s-%s" (include "eternia-backup.fullname" $ctx) $component | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- "default" }}
{{- end }}
{{- end }}

{{/* Name of a component's Roles/RoleBindings. Usage: (list . "restore" "app") */}}
{{- define "eternia-backup.rbacName" -}}
{{- printf "%s-%s-%s" (include "eternia-backup.fullname" (index . 0)) (index . 1) (index . 2) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eternia-backup.configMapName" -}}
{{- printf "%s-config" (include "eternia-backup.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eternia-backup.webhookName" -}}
{{- printf "%s-webhook" (include "eternia-backup.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eternia-backup.credentialsSecretName" -}}
{{- .Values.credentials.existingSecret | default .Values.credentials.name }}
{{- end }}

{{- define "eternia-backup.webhookSecretName" -}}
{{- .Values.webhook.auth.existingSecret | default (include "eternia-backup.webhookName" .) }}
{{- end }}

{{/* The chart creates the webhook Secret only when it has something to put in it. */}}
{{- define "eternia-backup.webhookSecretCreated" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.auth.existingSecret) (or .Values.webhook.auth.jwtHs256Secret .Values.webhook.slack.signingSecret) -}}
true
{{- end -}}
{{- end }}

{{- define "eternia-backup.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-backups" (include "eternia-backup.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{- define "eternia-backup.leaseName" -}}
{{- .Values.lease.name | default (printf "%s-restore" (include "eternia-backup.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* BACKUP_STORE, derived from where backups are kept. */}}
{{- define "eternia-backup.store" -}}
{{- if and .Values.persistence.enabled .Values.s3.enabled -}}
both
{{- else if .Values.s3.enabled -}}
s3
{{- else if .Values.persistence.enabled -}}
local
{{- else -}}
{{- fail "persistence.enabled and s3.enabled are both false: backups would be kept nowhere. Enable at least one." -}}
{{- end -}}
{{- end }}

{{/* Pod-level settings shared by every pod. */}}
{{- define "eternia-backup.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* checksum/config annotations: pods change when the settings they read change. */}}
{{- define "eternia-backup.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.credentials.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
The container settings shared by every eternia-backup container: image, security context, and the shared
ConfigMap as environment. Usage: include "eternia-backup.containerCommon" (dict "ctx" . "configMaps" (list "extra"))
*/}}
{{- define "eternia-backup.containerCommon" -}}
{{- $ctx := .ctx -}}
image: {{ include "eternia-backup.image" $ctx }}
imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
securityContext:
  {{- toYaml $ctx.Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "eternia-backup.configMapName" $ctx }}
  {{- range .configMaps }}
  - configMapRef:
      name: {{ . }}
  {{- end }}
{{- end }}

{{/*
Environment of a container, beyond the ConfigMaps (envFrom). Secrets only ever come in here, through
secretKeyRef, and only the ones the component needs. Every secret key is optional: a key missing from the
Secret leaves its variable unset (the binary then says which setting is missing).
Usage: include "eternia-backup.env" (dict "ctx" . "database" true "s3" true "slack" true "lease" true
  "ageIdentity" true "secretEnv" (list (list "ENV" "secret-name" "key")) "env" (list (dict "name" "X" "value" "y")))
*/}}
{{- define "eternia-backup.env" -}}
{{- $ctx := .ctx -}}
{{- $secret := include "eternia-backup.credentialsSecretName" $ctx -}}
{{- $keys := $ctx.Values.credentials.keys -}}
{{- $fromSecrets := list -}}
{{- if .database -}}
{{- $fromSecrets = append $fromSecrets (list "DATABASE_URL" $secret $keys.databaseUrl) -}}
{{- $fromSecrets = append $fromSecrets (list "PGPASSWORD" $secret $keys.pgPassword) -}}
{{- end -}}
{{- if and .s3 $ctx.Values.s3.enabled -}}
{{- $fromSecrets = append $fromSecrets (list "S3_BUCKET" $secret $keys.s3Bucket) -}}
{{- $fromSecrets = append $fromSecrets (list "AWS_ACCESS_KEY_ID" $secret $keys.awsAccessKey) -}}
{{- $fromSecrets = append $fromSecrets (list "AWS_SECRET_ACCESS_KEY" $secret $keys.awsSecretKey) -}}
{{- end -}}
{{- if and .slack $ctx.Values.notifications.slack.enabled -}}
{{- $fromSecrets = append $fromSecrets (list "NOTIFY_SLACK_WEBHOOK_URL" $secret $keys.slackWebhookUrl) -}}
{{- end -}}
{{- $fromSecrets = concat $fromSecrets (.secretEnv | default list) -}}
env:
  - name: TMPDIR
    value: /tmp
  {{- if .lease }}
  - name: LEASE_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  {{- end }}
  {{- range $fromSecrets }}
  {{- if index . 2 }}
  - name: {{ index . 0 }}
    valueFrom:
      secretKeyRef:
        name: {{ index . 1 }}
        key: {{ index . 2 | quote }}
        optional: true
  {{- end }}
  {{- end }}
  {{- if and .ageIdentity $ctx.Values.encryption.identity.existingSecret }}
  - name: AGE_IDENTITY_FILE
    value: {{ printf "%s/%s" $ctx.Values.encryption.identity.mountPath $ctx.Values.encryption.identity.key | quote }}
  {{- end }}
  {{- with .env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with $ctx.Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Volume mounts of a container: a writable /tmp, the backup volume, the age identity.
Usage: (dict "ctx" . "backups" true "readOnly" false "ageIdentity" false "extra" (list ...))
*/}}
{{- define "eternia-backup.volumeMounts" -}}
{{- $ctx := .ctx -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if .backups }}
  - name: backups
    mountPath: {{ $ctx.Values.persistence.mountPath }}
    {{- if .readOnly }}
    readOnly: true
    {{- end }}
  {{- end }}
  {{- if and .ageIdentity $ctx.Values.encryption.identity.existingSecret }}
  - name: age-identity
    mountPath: {{ $ctx.Values.encryption.identity.mountPath }}
    readOnly: true
  {{- end }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Volumes matching eternia-backup.volumeMounts (same arguments). */}}
{{- define "eternia-backup.volumes" -}}
{{- $ctx := .ctx -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $ctx.Values.tmpSizeLimit }}
  {{- if .backups }}
  - name: backups
    {{- if $ctx.Values.persistence.enabled }}
    persistentVolumeClaim:
      claimName: {{ include "eternia-backup.claimName" $ctx }}
      {{- if .readOnly }}
      readOnly: true
      {{- end }}
    {{- else }}
    emptyDir: {}
    {{- end }}
  {{- end }}
  {{- if and .ageIdentity $ctx.Values.encryption.identity.existingSecret }}
  - name: age-identity
    secret:
      secretName: {{ $ctx.Values.encryption.identity.existingSecret }}
      defaultMode: 0440
      items:
        - key: {{ $ctx.Values.encryption.identity.key }}
          path: {{ $ctx.Values.encryption.identity.key }}
  {{- end }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
