#!/usr/bin/env bash
# Validates the Kubernetes manifests in infra/k8s offline, with kubernetes-validate (pinned, from
# PyPI; it carries the API schemas, so nothing is fetched from a cluster) against a pinned
# Kubernetes version, rejecting unknown fields (--strict). Also checks that kustomization.yaml
# lists exactly the manifests present (it is not itself a Kubernetes resource).
#
#   infra/scripts/k8s-validate.sh
#
# Installs into a virtualenv (IOCLOUD_K8S_VENV, default target/k8s-venv) the first time. Quiet on
# success apart from one line; exits non-zero on any failure, and on any warning (an unknown
# kind or apiVersion is only a warning to the tool).
set -euo pipefail
cd "$(dirname "$0")/../.."

KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION="${IOCLOUD_K8S_VERSION:-1.30.0}"
venv="${IOCLOUD_K8S_VENV:-target/k8s-venv}"
dir=infra/k8s

installed="$("$venv/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ "$installed" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "k8s-validate: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $venv" >&2
  # --clear: a venv moved or copied from elsewhere has scripts that point at the old place.
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

manifests=()
for f in "$dir"/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
[ "${#manifests[@]}" -gt 0 ] || { echo "k8s-validate: no manifests in $dir" >&2; exit 1; }

# kustomization.yaml names every manifest, and only files that exist.
"$venv/bin/python" - "$dir" "${manifests[@]}" <<'PY'
import os, sys, yaml
d, files = sys.argv[1], sorted(os.path.basename(f) for f in sys.argv[2:])
with open(os.path.join(d, "kustomization.yaml")) as f:
    listed = yaml.safe_load(f).get("resources") or []
missing, extra = sorted(set(files) - set(listed)), sorted(set(listed) - set(files))
if missing or extra or len(listed) != len(set(listed)):
    print(f"k8s-validate: kustomization.yaml resources disagree with {d}: "
          f"not listed {missing}, listed but absent {extra}", file=sys.stderr)
    sys.exit(1)
PY

rc=0
out="$("$venv/bin/kubernetes-validate" --kubernetes-version "$KUBERNETES_VERSION" --strict --quiet "${manifests[@]}" 2>&1)" || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  echo "k8s-validate: FAILED against Kubernetes $KUBERNETES_VERSION" >&2
  exit 1
fi

resources="$("$venv/bin/python" -c 'import sys, yaml; print(sum(1 for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d))' "${manifests[@]}")"
echo "k8s-validate: ${#manifests[@]} files, $resources resources valid against Kubernetes $KUBERNETES_VERSION (strict, kubernetes-validate $KUBERNETES_VALIDATE_VERSION)"
