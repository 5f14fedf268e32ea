#!/usr/bin/env bash
# Short prefills as GEMVs (tlite-new) against the GEMM for every prefill (tlite-old), alternated:
# tlite bench pp at a few prompt lengths, and tlite run's prefill time of a 9-token prompt.
C=$(cd "$(dirname "$0")" && pwd); export XDG_RUNTIME_DIR=/tmp
if ! ldconfig -p | grep -q libvulkan.so.1; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for shape in ${SHAPES:-1b 8b}; do
  M=/tmp/m$shape
  if [ ! -d $M.m0e4 ]; then python3 $C/mkmodel.py $shape $M > /dev/null 2>&1; $C/tlite-old convert $M -o $M.m0e4 -g 64 > /dev/null 2>&1; fi
  for p in ${PROMPTS:-2 9 16 17 64}; do
    for b in tlite-old tlite-new tlite-old tlite-new; do
      echo "$shape $b p=$p $($C/$b bench $M.m0e4 -p $p -n 8 -r 3 2>/dev/null | grep -E '^pp')"
    done
  done
  for b in tlite-old tlite-new tlite-old tlite-new; do
    $C/$b run $M.m0e4 -p "The Fulton County Grand Jury said" -n 4 --max-seq 1024 --json 2>/dev/null \
      | python3 -c "import json,sys; d=json.load(sys.stdin); s=d['stats']; print('$shape $b run: prompt', s['prompt_tokens'], 'prefill ms %.2f' % (1e3*s['prefill_seconds']))"
  done
done
