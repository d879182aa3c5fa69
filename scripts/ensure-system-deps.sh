#!/usr/bin/env bash
# WebGPU in Node (Dawn) needs a Vulkan loader and a Vulkan driver; on machines without a GPU the driver is
# Chromium's SwiftShader, and the browser tests drive the same Chromium headless. On Debian, install them
# when running as root; otherwise say exactly what to run.
set -euo pipefail
icd=/usr/lib/chromium/vk_swiftshader_icd.json
have_loader() { ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; }
if [ -f "$icd" ] && [ -x /usr/bin/chromium ] && have_loader; then
  exit 0
fi
packages="chromium libvulkan1"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "ensure-system-deps: installing $packages (WebGPU tests: SwiftShader Vulkan driver, headless browser)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends $packages >/dev/null
  exit 0
fi
echo "ensure-system-deps: WebGPU tests need Debian packages that are missing. Run:" >&2
echo "  sudo apt-get update && sudo apt-get install -y $packages" >&2
exit 1
