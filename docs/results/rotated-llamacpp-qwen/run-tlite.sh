#!/usr/bin/env bash
# tlite's side of issue 14 on the CPU reference, after run-llamacpp.sh (which writes /tmp/qwen15
# and /tmp/qwen15-rot): GPTQ on the rotated SmolLM2 and Qwen2.5-Coder-1.5B, rotation exactness on
# Qwen, and the field's formats on the three original models.
set -uo pipefail
cd "$(dirname "$0")/../../.."   # the project root
T=${TLITE:-./target/release/tlite}; D=.cache/corpus/brown.txt; O=${OUT:-/tmp/qrot}; mkdir -p $O
FIELD=mxfp4,mxfp4-search,nvfp4,nvfp4-search,nf4,nf4-search,iq4_nl,q4_k,mxfp4-search+imp,nvfp4-search+imp,nf4-search+imp,iq4_nl+imp,q4_k+imp,m0e4-search+imp@64
t() { /usr/bin/time -f "%e s, max RSS %M KB" "$@"; }
# 1. rotated SmolLM2 (8 x 512): M0E4 GPTQ at 16 and 32, and every field format with GPTQ
[ -d /tmp/smollm2-rot ] || $T rotate .cache/hf/smollm2-135m-instruct -o /tmp/smollm2-rot --seed 0
t $T sweep /tmp/smollm2-rot --data $D --ctx 512 --chunks 8 --device cpu \
  --configs m0e4-search+imp+gptq@16,m0e4-search+imp+gptq@32,mxfp4-search+imp+gptq,nvfp4-search+imp+gptq,nf4-search+imp+gptq,iq4_nl+imp+gptq,q4_k+imp+gptq \
  --json $O/smollm2-rot-gptq.json
# 2. rotated Qwen2.5-Coder-1.5B (4 x 512): M0E4 GPTQ at 32
t $T sweep /tmp/qwen15-rot --data $D --ctx 512 --chunks 4 --device cpu \
  --configs m0e4-search+imp+gptq@32 --json $O/qwen-rot-gptq.json
# 3. rotation exactness: the original's PPL on the same windows
t $T ppl /tmp/qwen15 --data $D --ctx 512 --chunks 4 --device cpu --json > $O/qwen-orig-ppl.json
# 4. the field's formats on the original models
t $T sweep .cache/hf/smollm2-135m-instruct --data $D --ctx 512 --chunks 8 --device cpu --configs $FIELD --json $O/smollm2-field.json
# Gemma-3 (vocabulary 262,144: slow on the CPU reference) and Qwen2.5-1.5B: the five formats once each
t $T sweep .cache/hf/gemma3-270m --data $D --ctx 512 --chunks 8 --device cpu --configs mxfp4,nvfp4,nf4,iq4_nl,q4_k --json $O/gemma3-field.json
t $T sweep /tmp/qwen15 --data $D --ctx 512 --chunks 4 --device cpu --configs mxfp4,nvfp4,nf4,iq4_nl,q4_k,m0e4-search@64 --json $O/qwen-field.json
# 5. rotated Qwen2.5-Coder-1.5B over 8 x 512 (beside run-llamacpp.sh with CHUNKS=8), the same calibration
t $T sweep /tmp/qwen15-rot --data $D --ctx 512 --chunks 8 --device cpu \
  --configs m0e4-search+imp+gptq@32 --json $O/qwen-rot-gptq-8.json
