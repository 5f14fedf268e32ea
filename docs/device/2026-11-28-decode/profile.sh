#!/usr/bin/env bash
# Per-op GPU time of a decode and a prefill step (tlite bench --profile) on the side-by-side bodies.
C=$(cd "$(dirname "$0")" && pwd); export XDG_RUNTIME_DIR=/tmp
if ! ldconfig -p | grep -q libvulkan.so.1; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for shape in ${SHAPES:-1b 8b}; do
  M=/tmp/m$shape
  if [ ! -d $M.m0e4 ]; then python3 $C/mkmodel.py $shape $M > /dev/null 2>&1; $C/tlite-new convert $M -o $M.m0e4 -g 64 > /dev/null 2>&1; fi
  echo "=== $shape"; $C/tlite-new bench $M.m0e4 -p 512 -n 128 -r 3 --profile 2>&1 | tail -45
done
