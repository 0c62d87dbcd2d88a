{{/*
Names, labels and the pieces every pod shares. Labels are defined here once; templates never repeat them.
Nothing here is random or time-based: a render depends only on the values (Argo CD stays in sync).

Calling convention: every helper below takes one argument, a dict holding the root context under "ctx"
and the helper's own arguments beside it:
  include "eternia-backup.fullname" (dict "ctx" $)
  include "eternia-backup.labels" (dict "ctx" $ "component" "backup" "extra" $.Values.backup.podLabels)
Templates pass $ (the root, whatever `with`/`range` has rebound `.` to); inside a helper $ is that dict,
so helpers read the root as .ctx (bound to $ctx) and pass (dict "ctx" $ctx ...) on. The only other
includes are of template files (checksums), which take the root context itself.
*/}}

{{/* The chart name, or nameOverride. Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.name" -}}
{{- default .ctx.Chart.Name .ctx.Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every name the chart derives: fullnameOverride, else the release name (plus the chart name unless the release name contains it). Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.fullname" -}}
{{- $ctx := .ctx -}}
{{- if $ctx.Values.fullnameOverride }}
{{- $ctx.Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default $ctx.Chart.Name $ctx.Values.nameOverride }}
{{- if contains $name $ctx.Release.Name }}
{{- $ctx.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" $ctx.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
<fullname>-<suffix>, cut to 63 characters (the DNS label limit) without a trailing "-". Every derived
object name goes through here. Usage: (dict "ctx" $ "suffix" "config")
*/}}
{{- define "eternia-backup.suffixedName" -}}
{{- printf "%s-%s" (include "eternia-backup.fullname" (dict "ctx" .ctx)) (required "eternia-backup.suffixedName: suffix is required" .suffix) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eternia-backup.chart" -}}
{{- printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels (name, instance and, when given, component): stable across upgrades, so nothing
overrides them. Usage: (dict "ctx" $ "component" "webhook"), or (dict "ctx" $) for the whole release.
*/}}
{{- define "eternia-backup.selectorLabels" -}}
{{- $labels := dict "app.kubernetes.io/name" (include "eternia-backup.name" (dict "ctx" .ctx)) "app.kubernetes.io/instance" .ctx.Release.Name -}}
{{- with .component }}
{{- $_ := set $labels "app.kubernetes.io/component" . -}}
{{- end }}
{{- toYaml $labels }}
{{- end }}

{{/*
Labels of every object: one dict, rendered with toYaml, so no key appears twice. Precedence, lowest
first: the standard labels (helm.sh/chart, app.kubernetes.io/version, managed-by, part-of), then
.Values.commonLabels, then "extra" (an object's own labels: podLabels, metrics.*.labels), then the selector
labels, which always win: a commonLabel or extra label giving a selector label another value fails the
render (it would split a Deployment's pods from its selector; rename with nameOverride instead).
Usage: (dict "ctx" $ "component" "backup" "extra" $.Values.backup.podLabels); "extra" is optional.
*/}}
{{- define "eternia-backup.labels" -}}
{{- $ctx := .ctx -}}
{{- $component := required "eternia-backup.labels: component is required" .component -}}
{{- $selector := include "eternia-backup.selectorLabels" (dict "ctx" $ctx "component" $component) | fromYaml -}}
{{- $labels := dict -}}
{{- $_ := set $labels "helm.sh/chart" (include "eternia-backup.chart" (dict "ctx" $ctx)) -}}
{{- $_ = set $labels "app.kubernetes.io/version" ($ctx.Values.image.tag | default $ctx.Chart.AppVersion | trunc 63 | trimSuffix "-") -}}
{{- $_ = set $labels "app.kubernetes.io/managed-by" $ctx.Release.Service -}}
{{- $_ = set $labels "app.kubernetes.io/part-of" "eternia-backup" -}}
{{- range $source := list $ctx.Values.commonLabels .extra }}
{{- range $key, $value := $source }}
{{- if and (hasKey $selector $key) (ne (toString $value) (get $selector $key)) }}
{{- fail (printf "label %s=%q cannot replace the selector label %s=%q (from commonLabels or an object's own labels): selector labels stay stable; use nameOverride to change app.kubernetes.io/name" $key (toString $value) $key (get $selector $key)) }}
{{- end }}
{{- $_ = set $labels $key $value -}}
{{- end }}
{{- end }}
{{- range $key, $value := $selector }}
{{- $_ = set $labels $key $value -}}
{{- end }}
{{- toYaml $labels }}
{{- end }}

{{/*
Argo CD sync wave: storage, configuration and RBAC (prerequisite, -1) before the workloads that use them
(workload, 0), then monitoring and ingress (monitoring, 1). Usage: (dict "ctx" $ "wave" "prerequisite")
*/}}
{{- define "eternia-backup.syncWave" -}}
{{- $waves := dict "prerequisite" "-1" "workload" "0" "monitoring" "1" -}}
{{- if not (hasKey $waves (toString .wave)) }}
{{- fail (printf "eternia-backup.syncWave: unknown wave %q (prerequisite, workload or monitoring)" (toString .wave)) }}
{{- end -}}
argocd.argoproj.io/sync-wave: {{ get $waves .wave | quote }}
{{- end }}

{{/* Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.image" -}}
{{- $ctx := .ctx -}}
{{- if $ctx.Values.image.digest -}}
{{ $ctx.Values.image.repository }}@{{ $ctx.Values.image.digest }}
{{- else -}}
{{ $ctx.Values.image.repository }}:{{ $ctx.Values.image.tag | default $ctx.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* ServiceAccount name of a component. Usage: (dict "ctx" $ "component" "backup") */}}
{{- define "eternia-backup.serviceAccountName" -}}
{{- $ctx := .ctx }}
{{- $name := get $ctx.Values.serviceAccount.names .component }}
{{- if $name }}
{{- $name }}
{{- else if $ctx.Values.serviceAccount.create }}
{{- include "eternia-backup.suffixedName" (dict "ctx" $ctx "suffix" .component) }}
{{- else }}
{{- "default" }}
{{- end }}
{{- end }}

{{/* Name of a component's Roles/RoleBindings. Usage: (dict "ctx" $ "component" "restore" "scope" "app") */}}
{{- define "eternia-backup.rbacName" -}}
{{- include "eternia-backup.suffixedName" (dict "ctx" .ctx "suffix" (printf "%s-%s" .component .scope)) }}
{{- end }}

{{/* Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.configMapName" -}}
{{- include "eternia-backup.suffixedName" (dict "ctx" .ctx "suffix" "config") }}
{{- end }}

{{/* Name of the webhook's Deployment, Service, ConfigMap, Ingress, NetworkPolicy, ServiceMonitor. Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.webhookName" -}}
{{- include "eternia-backup.suffixedName" (dict "ctx" .ctx "suffix" "webhook") }}
{{- end }}

{{/* Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.jwksConfigMapName" -}}
{{- include "eternia-backup.suffixedName" (dict "ctx" .ctx "suffix" "webhook-jwks") }}
{{- end }}

{{/* Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.credentialsSecretName" -}}
{{- .ctx.Values.credentials.existingSecret | default .ctx.Values.credentials.name }}
{{- end }}

{{/* Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.webhookSecretName" -}}
{{- .ctx.Values.webhook.auth.existingSecret | default (include "eternia-backup.webhookName" (dict "ctx" .ctx)) }}
{{- end }}

{{/* The chart creates the webhook Secret only when it has something to put in it. Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.webhookSecretCreated" -}}
{{- $w := .ctx.Values.webhook -}}
{{- if and $w.enabled (not $w.auth.existingSecret) (or $w.auth.jwtHs256Secret $w.slack.signingSecret) -}}
true
{{- end -}}
{{- end }}

{{/* Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.claimName" -}}
{{- .ctx.Values.persistence.existingClaim | default (include "eternia-backup.suffixedName" (dict "ctx" .ctx "suffix" "backups")) }}
{{- end }}

{{/* Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.leaseName" -}}
{{- .ctx.Values.lease.name | default (include "eternia-backup.suffixedName" (dict "ctx" .ctx "suffix" "restore")) }}
{{- end }}

{{/* BACKUP_STORE, derived from where backups are kept. Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.store" -}}
{{- $ctx := .ctx -}}
{{- if and $ctx.Values.persistence.enabled $ctx.Values.s3.enabled -}}
both
{{- else if $ctx.Values.s3.enabled -}}
s3
{{- else if $ctx.Values.persistence.enabled -}}
local
{{- else -}}
{{- fail "persistence.enabled and s3.enabled are both false: backups would be kept nowhere. Enable at least one." -}}
{{- end -}}
{{- end }}

{{/* Pod-level settings shared by every pod. Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.podCommon" -}}
{{- $ctx := .ctx -}}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* checksum/config annotations: pods change when the settings they read change. Usage: (dict "ctx" $) */}}
{{- define "eternia-backup.checksums" -}}
{{- $ctx := .ctx -}}
checksum/config: {{ include (print $ctx.Template.BasePath "/configmap.yaml") $ctx | sha256sum }}
{{- if not $ctx.Values.credentials.existingSecret }}
checksum/secret: {{ include (print $ctx.Template.BasePath "/secret.yaml") $ctx | sha256sum }}
{{- end }}
{{- end }}

{{/*
The container settings shared by every eternia-backup container: image, security context, and the shared
ConfigMap as environment. Usage: include "eternia-backup.containerCommon" (dict "ctx" $ "configMaps" (list "extra"))
*/}}
{{- define "eternia-backup.containerCommon" -}}
{{- $ctx := .ctx -}}
image: {{ include "eternia-backup.image" (dict "ctx" $ctx) }}
imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
securityContext:
  {{- toYaml $ctx.Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "eternia-backup.configMapName" (dict "ctx" $ctx) }}
  {{- range .configMaps }}
  - configMapRef:
      name: {{ . }}
  {{- end }}
{{- end }}

{{/*
Environment of a container, beyond the ConfigMaps (envFrom). Secrets only ever come in here, through
secretKeyRef, and only the ones the component needs. Every secret key is optional: a key missing from the
Secret leaves its variable unset (the binary then says which setting is missing).
Usage: include "eternia-backup.env" (dict "ctx" $ "database" true "s3" true "slack" true "lease" true
  "ageIdentity" true "secretEnv" (list (list "ENV" "secret-name" "key")) "env" (list (dict "name" "X" "value" "y")))
*/}}
{{- define "eternia-backup.env" -}}
{{- $ctx := .ctx -}}
{{- $secret := include "eternia-backup.credentialsSecretName" (dict "ctx" $ctx) -}}
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
Usage: (dict "ctx" $ "backups" true "readOnly" false "ageIdentity" false "extra" (list ...))
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
      claimName: {{ include "eternia-backup.claimName" (dict "ctx" $ctx) }}
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

{{/*
Seconds in a duration as the binary reads it: 90, 90s, 15m, 1h.
*/}}
{{- define "eternia-backup.seconds" -}}
{{- $d := toString .duration -}}
{{- if not (regexMatch "^[0-9]+[smh]?$" $d) -}}
{{- fail (printf "%s=%q is not a duration; use e.g. 600s, 10m or 1h" .name $d) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $d | int -}}
{{- if hasSuffix "h" $d -}}{{ mul $n 3600 }}{{- else if hasSuffix "m" $d -}}{{ mul $n 60 }}{{- else -}}{{ $n }}{{- end -}}
{{- end -}}

{{/*
The restore Job's deadline: restore.activeDeadlineSeconds, or what a restore of this installation needs:
verify and load (about a backup's time), the safety backup (a backup), each Deployment's rollout wait, and
10 minutes of margin. With restore.scaleToZero each Deployment also gets a second wait (its pods going away,
bounded by the same timeout), and each hook its 600 s limit.
*/}}
{{- define "eternia-backup.restoreDeadline" -}}
{{- $v := .ctx.Values -}}
{{- if not (kindIs "invalid" $v.restore.activeDeadlineSeconds) -}}
{{- $v.restore.activeDeadlineSeconds -}}
{{- else -}}
{{- $rollout := include "eternia-backup.seconds" (dict "ctx" .ctx "name" "restore.rolloutTimeout" "duration" $v.restore.rolloutTimeout) | int -}}
{{- $waits := ternary 2 1 (and $v.restore.scaleToZero $v.restore.includeKubernetes) -}}
{{- $hooks := 0 -}}
{{- if $v.restore.hooks.pre -}}{{- $hooks = add1 $hooks -}}{{- end -}}
{{- if $v.restore.hooks.post -}}{{- $hooks = add1 $hooks -}}{{- end -}}
{{- add (mul 2 (int $v.backup.activeDeadlineSeconds)) (mul $waits (len $v.app.deployments) $rollout) (mul $hooks 600) 600 -}}
{{- end -}}
{{- end -}}
