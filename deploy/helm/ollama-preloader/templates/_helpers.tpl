{{/* Names: the release name alone when it already contains the chart's name. */}}
{{- define "ollama-preloader.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ollama-preloader.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: 63 characters at most, like every Service name. */}}
{{- define "ollama-preloader.headlessName" -}}
{{- printf "%s-headless" (include "ollama-preloader.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "ollama-preloader.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ollama-preloader.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ollama-preloader.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ollama-preloader.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ollama-preloader.ollamaImage" -}}
{{- printf "%s:%s" .Values.ollama.image.repository .Values.ollama.image.tag -}}
{{- end -}}

{{- define "ollama-preloader.preloaderImage" -}}
{{- printf "%s:%s" .Values.preloader.image.repository (default .Chart.AppVersion .Values.preloader.image.tag) -}}
{{- end -}}

{{/*
OLLAMA_PRELOAD_MODELS: one entry per model, `name` or `name?key=value&...` with URL-encoded values, the
format the preloader parses. Options are sorted by key (range over a map), so the output is stable.
*/}}
{{- define "ollama-preloader.modelList" -}}
{{- $entries := list -}}
{{- range .Values.models -}}
{{- if kindIs "string" . -}}
{{- $entries = append $entries . -}}
{{- else -}}
{{- $params := list -}}
{{- if hasKey . "keepAlive" -}}
{{- $params = append $params (printf "keep_alive=%s" (toString .keepAlive | urlquery)) -}}
{{- end -}}
{{- if hasKey . "prompt" -}}
{{- $params = append $params (printf "prompt=%s" (.prompt | urlquery)) -}}
{{- end -}}
{{- if hasKey . "think" -}}
{{- $params = append $params (printf "think=%s" (toString .think | urlquery)) -}}
{{- end -}}
{{- range $key, $value := .options -}}
{{- $params = append $params (printf "%s=%s" $key (toString $value | urlquery)) -}}
{{- end -}}
{{- if $params -}}
{{- $entries = append $entries (printf "%s?%s" .name (join "&" $params)) -}}
{{- else -}}
{{- $entries = append $entries .name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join "," $entries -}}
{{- end -}}

{{/* Settings the sidecar and the warm Job share: the same models, warmed the same way. */}}
{{- define "ollama-preloader.preloadEnv" -}}
- name: OLLAMA_PRELOAD_MODELS
  value: {{ include "ollama-preloader.modelList" . | quote }}
{{- with .Values.keepAlive | toString }}
- name: OLLAMA_PRELOAD_KEEP_ALIVE
  value: {{ . | quote }}
{{- end }}
- name: OLLAMA_PRELOAD_PULL
  value: {{ .Values.preloader.pull | quote }}
- name: OLLAMA_PRELOAD_WARM_TIMEOUT
  value: {{ .Values.preloader.warmTimeout | quote }}
- name: OLLAMA_PRELOAD_ATTEMPTS
  value: {{ .Values.preloader.attempts | quote }}
- name: OLLAMA_PRELOAD_LOG_FORMAT
  value: {{ .Values.preloader.logFormat | quote }}
{{- with .Values.ollama.maxLoadedModels | toString }}
- name: OLLAMA_MAX_LOADED_MODELS
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The pod of the warm Job and CronJob. */}}
{{- define "ollama-preloader.warmPodSpec" -}}
restartPolicy: Never
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: warm
    image: {{ include "ollama-preloader.preloaderImage" . | quote }}
    imagePullPolicy: {{ .Values.preloader.image.pullPolicy }}
    env:
      # Every address of the headless Service is a replica (publishNotReadyAddresses: cold pods too).
      # The short name resolves through the pod's DNS search path, in whatever namespace this runs.
      - name: OLLAMA_HOST
        value: {{ printf "http://%s:%v" (include "ollama-preloader.headlessName" .) .Values.ollama.port | quote }}
      - name: OLLAMA_PRELOAD_RESOLVE
        value: all
      - name: OLLAMA_PRELOAD_MODE
        value: once
      - name: OLLAMA_PRELOAD_WAIT_TIMEOUT
        value: {{ .Values.warmJob.waitTimeout | quote }}
      {{- include "ollama-preloader.preloadEnv" . | nindent 6 }}
      {{- with .Values.preloader.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with .Values.warmJob.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.preloader.securityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  - name: tmp
    emptyDir: {}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
