#!/usr/bin/env bash
# Time to first token, before (tlite) and after (tlite-new: the load waits for its uploads),
# alternated, on the side-by-side bodies (made here if the machine is fresh).
C=$(cd "$(dirname "$0")" && pwd); export XDG_RUNTIME_DIR=/tmp
if ! ldconfig -p | grep -q libvulkan.so.1; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for shape in ${SHAPES:-1b 8b}; do
  M=/tmp/m$shape
  if [ ! -d $M.m0e4 ]; then python3 $C/mkmodel.py $shape $M > /dev/null 2>&1; $C/tlite convert $M -o $M.m0e4 -g 64 > /dev/null 2>&1; fi
  for b in tlite tlite-new tlite tlite-new; do
    /usr/bin/time -f "$shape $b wall %e s" $C/$b run $M.m0e4 -p "The Fulton County Grand Jury said" -n 4 --max-seq 1024 --json 2>/tmp/err.txt \
      | python3 -c "import json,sys; d=json.load(sys.stdin); s=d['stats']; print('$shape $b', 'prompt', s['prompt_tokens'], 'prefill ms %.1f' % (1e3*s['prefill_seconds']), 'load', d.get('load_seconds'))"
    grep wall /tmp/err.txt
  done
done
