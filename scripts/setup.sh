#!/usr/bin/env bash
# Installs what llama2-webgpu needs on Debian 12 (bookworm): a Vulkan driver for WebGPU (Mesa 25's
# lavapipe from bookworm-backports on machines without a GPU: Debian 12's own Mesa 22.3 is refused by
# Dawn), Chromium for the browser tests, then the npm packages (npm ci also builds dist/).
# Idempotent: steps already done are skipped. Set SKIP_APT=1 to skip the system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=0
if [ "${SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  # lavapipe from Mesa >= 25 (the package version of mesa-vulkan-drivers), libvulkan1, chromium
  mesa_ver=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)
  if ! dpkg --compare-versions "$mesa_ver" ge 25 || ! dpkg -s libvulkan1 >/dev/null 2>&1 || ! command -v chromium >/dev/null; then
    need_apt=1
  fi
fi
if [ "$need_apt" = 1 ]; then
  echo "setup: installing Mesa 25 (lavapipe Vulkan) from bookworm-backports and Chromium" >&2
  if [ ! -f /etc/apt/sources.list.d/backports.sources ] && grep -q bookworm /etc/os-release; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | $SUDO tee /etc/apt/sources.list.d/backports.sources >/dev/null
  fi
  $SUDO apt-get update -qq
  if grep -q bookworm /etc/os-release; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1
  else
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi

# npm ci runs the "prepare" script, which compiles the TypeScript to dist/.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund
else
  npm run build --silent
fi

# llama.cpp (node-llama-cpp's prebuilt CPU binary, bench-only, ~85 MB) and python3 for its quantizer: the
# perplexity test compares our formats with llama.cpp's on the default model. SKIP_LLAMACPP=1 skips it.
if [ "${SKIP_LLAMACPP:-0}" != 1 ] && [ ! -f bench/llamacpp/node_modules/node-llama-cpp/package.json ]; then
  npm install --prefix bench/llamacpp --omit=optional --ignore-scripts --no-audit --no-fund
fi
if ! command -v python3 >/dev/null && [ "${SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3
fi
